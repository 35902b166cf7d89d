"""The job file's JSON Schema (tg_actors/jobschema.py, `tg schema`): the shipped
configs/job.schema.json is the models' schema, every shipped job validates against it and
names it on its first line, a typo is refused by it, defaults read as we write them, and
ISO 8601 durations are accepted by the job model too."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml

from tg_actors.jobs import parse_job
from tg_actors.jobschema import job_schema, schema_text

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "configs" / "job.schema.json"
JOBS = sorted((ROOT / "configs" / "jobs").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "configs" / "examples").glob("*/*.yaml"))


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


@pytest.mark.parametrize("path", JOBS + EXAMPLES, ids=lambda p: p.name)
def test_every_shipped_job_validates_against_the_schema(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), job_schema())


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
