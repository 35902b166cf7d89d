from __future__ import annotations

from pathlib import Path

import pytest

from tg_actors.cli import main
from tg_actors.config_files import load_jobs

GOOD = """
name: good
source: {url: "http://127.0.0.1:9/x"}
destination: {table: good}
"""


def test_shipped_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "configs"
    report = load_jobs([root / "jobs", root / "examples" / "online", root / "examples" / "auth"])
    assert not report.errors, report.errors
    assert "demo_orders" in report.jobs


def test_bad_file_reported_by_name_others_load(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(
        "name: bad\nsource: {url: 'http://x', methd: GET}\ndestination: {table: t}\n"
    )
    (tmp_path / "c.yaml").write_text("name: [unclosed\n")
    (tmp_path / "d.yaml").write_text(GOOD)  # same name as a.yaml
    report = load_jobs([tmp_path])
    assert list(report.jobs) == ["good"]
    text = [str(e) for e in report.errors]
    assert text[0] == f"{tmp_path / 'b.yaml'}: source.methd: unknown field"
    assert text[1].startswith(
        f"{tmp_path / 'c.yaml'}: invalid YAML: line 2, column 1: expected ','"
    )
    assert (
        text[2]
        == f"{tmp_path / 'd.yaml'}: name: job 'good' is already defined in {tmp_path / 'a.yaml'}"
    )


def test_tg_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert main(["validate", str(good)]) == 0
    assert f"{good}: ok (job good)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad\nsource: {url: 'http://x'}\ndestination: {table: t}\n")
    assert main(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}: name: String should match pattern" in out
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 1
    assert "no such file" in capsys.readouterr().out


def test_db_named_tg_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "x", "--db", "data/tg.duckdb"]) == 2
    assert "clashes with the schema 'tg'" in capsys.readouterr().err
