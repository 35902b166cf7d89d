"""The job file's JSON Schema (tg_actors/jobschema.py, `tg schema`): the shipped
configs/job.schema.json is the models' schema, every shipped job validates against it and
names it on its first line, a typo is refused by it, defaults read as we write them, and
ISO 8601 durations are accepted by the job model too. Every field has a description and an
example that the schema itself accepts, and docs/jobs.md (tg_actors/jobdocs.py) is the
reference generated from it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tg_actors.jobbase import ISO_DURATION_PATTERN
from tg_actors.jobdocs import markdown
from tg_actors.jobs import parse_job
from tg_actors.jobschema import job_schema, schema_text

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "configs" / "job.schema.json"
JOBS = sorted((ROOT / "configs" / "jobs").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "configs" / "examples").rglob("*.yaml"))
DOCS = ROOT / "docs" / "jobs.md"


def _shipped() -> dict[str, Any]:
    return json.loads(SHIPPED.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _fields(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every field of every object of a job: (Model.field, its schema)."""
    models = {"JobSpec": schema, **schema["$defs"]}
    return [
        (f"{name}.{key}", prop)
        for name, model in models.items()
        for key, prop in model.get("properties", {}).items()
    ]


def test_the_shipped_schema_is_the_models_schema() -> None:
    assert SHIPPED.read_text(encoding="utf-8") == schema_text(), (
        "configs/job.schema.json is stale: run `tg schema -o configs/job.schema.json`"
    )


def test_tg_schema_prints_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tg_actors.cli.main", "schema"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == job_schema()


def test_the_shipped_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(_shipped())


@pytest.mark.parametrize("path", JOBS + EXAMPLES, ids=lambda p: p.name)
def test_every_shipped_job_validates_against_the_schema(path: Path) -> None:
    job = yaml.safe_load(path.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(_shipped()).validate(job)
    parse_job(job, str(path))  # and the models agree


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
def test_every_shipped_job_names_the_schema_for_editors(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../job.schema.json"
    assert (path.parent / "../job.schema.json").resolve() == SHIPPED


def test_a_typo_is_refused_by_the_schema() -> None:
    job = yaml.safe_load(JOBS[0].read_text(encoding="utf-8"))
    job["source"]["methd"] = "GET"
    with pytest.raises(jsonschema.ValidationError, match="'methd' was unexpected"):
        jsonschema.validate(job, job_schema())


@pytest.mark.parametrize(
    ("where", "key", "typo"),
    [((), "source", "sourse"), (("source",), "url", "ulr"), (("source", "paginate"), "param", "parm"),
     (("destination",), "primary_key", "primary_keys"), (("schedule",), "interval", "intervall")],
)  # fmt: skip
def test_the_shipped_schema_refuses_a_typod_key(
    where: tuple[str, ...], key: str, typo: str
) -> None:
    job = yaml.safe_load((ROOT / "configs" / "jobs" / "demo_orders.yaml").read_text("utf-8"))
    part = job
    for step in where:
        part = part[step]
    part[typo] = part.pop(key)
    errors = list(jsonschema.Draft202012Validator(_shipped()).iter_errors(job))
    messages = []
    while errors:  # a union (optional schedule, the paginate kinds) nests its errors
        error = errors.pop()
        messages.append(error.message)
        errors.extend(error.context or [])
    assert any(f"{typo!r} was unexpected" in m for m in messages), messages


def test_every_field_has_a_description_and_an_example() -> None:
    missing = [
        f"{name}: {what}"
        for name, prop in _fields(job_schema())
        for what in ("description", "examples")
        if not prop.get(what)
    ]
    assert not missing, (
        "fields without a description or an example (Field(...) in the models):\n"
        + "\n".join(missing)
    )


def test_every_example_is_accepted_by_its_fields_schema() -> None:
    schema = job_schema()
    wrong = []
    for name, prop in _fields(schema):
        validator = jsonschema.Draft202012Validator({"$defs": schema["$defs"], **prop})
        wrong += [f"{name}: {example!r}" for example in prop.get("examples", [])
                  if not validator.is_valid(example)]  # fmt: skip
    assert not wrong, "examples their own field refuses:\n" + "\n".join(wrong)


def test_no_default_and_no_example_is_an_iso_duration() -> None:
    iso = re.compile(ISO_DURATION_PATTERN)
    found: list[str] = []

    def walk(value: Any, path: str, shown: bool) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}/{key}", shown or key in ("default", "examples"))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{path}/{i}", shown)
        elif shown and isinstance(value, str) and len(value) > 1 and iso.match(value):
            found.append(f"{path}: {value}")

    walk(_shipped(), "#", False)
    assert not found, "ISO 8601 durations where our syntax (30m) belongs:\n" + "\n".join(found)


def test_docs_jobs_md_is_the_generated_reference() -> None:
    assert DOCS.read_text(encoding="utf-8") == markdown(), (
        "docs/jobs.md is stale: run `.venv/bin/python -m tg_actors.jobdocs > docs/jobs.md`"
    )


def test_the_reference_lists_every_object_and_field() -> None:
    text = markdown()
    schema = job_schema()
    for name, model in schema["$defs"].items():
        if "properties" in model:
            assert f'<a id="{name.lower()}"></a>' in text, name
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(_fields(schema))
    for path in ("`source.paginate.type`", "`source.auth.token_url`", "`source.rules[].action`",
                 "`destination.primary_key`", "`schedule.interval`", "`name`"):  # fmt: skip
        assert any(row.startswith(f"| {path} |") for row in rows), path
    timeout = next(row for row in rows if row.startswith("| `timeout` |"))
    assert "| duration | default `30m` |" in timeout


def test_python_m_jobdocs_prints_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tg_actors.jobdocs"],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode("utf-8") == markdown()


def test_defaults_are_in_our_own_duration_syntax() -> None:
    text = json.dumps(job_schema())
    schema = job_schema()
    assert schema["properties"]["timeout"]["default"] == "30m"
    assert schema["$defs"]["Retries"]["properties"]["backoff"]["default"] == "2s"
    assert '"default": "PT' not in text


@pytest.mark.parametrize(
    ("text", "delta"),
    [("PT30M", timedelta(minutes=30)), ("P1DT2H", timedelta(days=1, hours=2)),
     ("PT1.5S", timedelta(seconds=1.5)), ("1h30m", timedelta(minutes=90))],
)  # fmt: skip
def test_iso_8601_durations_are_accepted(text: str, delta: timedelta) -> None:
    job = parse_job(
        {"name": "j", "timeout": text, "source": {"url": "http://x"}, "destination": {"table": "t"}}
    )
    assert job.timeout == delta
    jsonschema.validate(
        {
            "name": "j",
            "timeout": text,
            "source": {"url": "http://x"},
            "destination": {"table": "t"},
        },
        job_schema(),
    )


@pytest.mark.parametrize("text", ["P1M", "P1W", "PT", "P"])
def test_durations_without_a_fixed_length_are_refused(text: str) -> None:
    with pytest.raises(Exception, match="invalid duration"):
        parse_job(
            {
                "name": "j",
                "timeout": text,
                "source": {"url": "http://x"},
                "destination": {"table": "t"},
            }
        )
