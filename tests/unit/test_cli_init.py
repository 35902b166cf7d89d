"""`tg init [DIR]`: an example job that validates against the model and the schema, the
schema as `tg schema` writes it, and nothing overwritten without --force."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from tg_actors.cli.main import main
from tg_actors.config.files import load_job_file
from tg_actors.jobschema import job_schema, schema_text


def test_init_writes_a_job_that_validates_and_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "project"
    assert main(["init", str(root)]) == 0
    job = root / "configs" / "jobs" / "my_orders.yaml"
    spec = load_job_file(job)
    assert spec.name == "my_orders" and spec.source.incremental is not None
    jsonschema.validate(yaml.safe_load(job.read_text()), job_schema())
    assert (root / "configs" / "job.schema.json").read_text() == schema_text()
    assert job.read_text().startswith("# yaml-language-server: $schema=../job.schema.json\n")
    assert f"wrote {job}" in capsys.readouterr().out
    assert main(["validate", str(job.parent)]) == 0


def test_init_overwrites_nothing_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "configs" / "jobs" / "my_orders.yaml"
    job.parent.mkdir(parents=True)
    job.write_text("name: mine\n")
    assert main(["init", str(tmp_path)]) == 1
    assert job.read_text() == "name: mine\n"
    assert not (tmp_path / "configs" / "job.schema.json").exists()
    assert "exists: nothing written" in capsys.readouterr().err
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert load_job_file(job).name == "my_orders"
