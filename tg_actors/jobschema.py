"""The JSON Schema of a job file, for editors (`tg schema`, configs/job.schema.json): the
pydantic models' schema with defaults written the way our own parser reads them (`30m`,
not pydantic's ISO `PT30M`), and the JSON Schema draft named, so the YAML language server
completes and checks job files."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from tg_actors.durations import format_duration
from tg_actors.jobs import JobSpec

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILE = "configs/job.schema.json"  # shipped beside the jobs, named by their first line


class _OurDefaults(GenerateJsonSchema):
    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def job_schema() -> dict[str, Any]:
    """The job file's JSON Schema (validation mode: what a file may say)."""
    schema = JobSpec.model_json_schema(mode="validation", schema_generator=_OurDefaults)
    return {
        "$schema": DRAFT,
        "title": "turbo-giggle job",
        "description": "One sync job: an HTTP source, a DuckDB destination, when it runs.",
        **schema,
    }


def schema_text() -> str:
    """job_schema() as the shipped file holds it (sorted keys, two-space indent, a newline)."""
    return json.dumps(job_schema(), indent=2, sort_keys=True) + "\n"
