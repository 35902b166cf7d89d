"""The `tg` app itself, without a running system: `--version`, exit codes 2 (a bad flag) and 3
(an unknown job, no system answering), `--json` documents, the progress line off a terminal,
and a start-up that imports neither Ray, DuckDB nor Arrow."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.kit.cli import free_port, orders_job
from tests.kit.jobs import write_job
from tg_actors.cli.main import main
from tg_actors.cli.ops import Progress, schedule_text, summary


def _tg(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from tg_actors.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )


def test_version_prints_the_package_version() -> None:
    done = _tg("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"tg {version('turbo-giggle')}\n"


def test_the_app_starts_without_ray_duckdb_or_arrow() -> None:
    probe = (
        "import sys; from tg_actors.cli.main import main; rc = main(['--version']);"
        "print(rc, sorted(m for m in ('ray', 'duckdb', 'pyarrow', 'pydantic') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout + done.stderr


def test_a_bad_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--bogus"]) == 2
    assert "No such option: --bogus" in capsys.readouterr().err
    assert main(["runs", "--limit", "0"]) == 2  # below its minimum
    assert main(["nosuchcommand"]) == 2


def test_no_system_answering_is_not_found(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TG_API_TOKEN", "t0ken-t0ken-t0ken-t0ken")
    url = f"http://127.0.0.1:{free_port()}"
    for argv in (["jobs"], ["runs"], ["logs", "r1"], ["trigger", "j", "--wait"], ["engines"]):
        assert main([*argv, "--url", url]) == 3, argv
    out = capsys.readouterr()
    assert "no turbo-giggle API at" in out.out + out.err


def test_run_checks_the_job_name_before_starting_ray(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    write_job(configs, "known", orders_job(free_port(), name="known", interval=False))
    db = tmp_path / "data" / "turbo_giggle.duckdb"
    probe = (
        "import sys; from tg_actors.cli.main import main;"
        f"rc = main(['run', 'nope', '--configs', {str(configs)!r}, '--db', {str(db)!r}]);"
        "print(rc, 'ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "3 False", done.stdout + done.stderr
    assert f"No job named 'nope' (looked in {configs / 'jobs'} and {db})" in done.stdout


def test_validate_json_is_one_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configs = tmp_path / "configs"
    good = write_job(configs, "good", orders_job(8000, name="good", interval=False))
    assert main(["validate", str(good), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {
        "ok": True,
        "jobs": [{"name": "good", "path": str(good)}],
        "errors": [],
        "missing": [],
    }
    bad = write_job(configs, "bad", "name: bad\n")
    assert main(["validate", str(good), str(bad), str(tmp_path / "gone.yaml"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["missing"] == [str(tmp_path / "gone.yaml")]
    assert doc["errors"] and all(str(bad) in error for error in doc["errors"])


def test_progress_off_a_terminal_is_one_plain_line_at_the_end() -> None:
    stream = io.StringIO()
    with Progress("orders", stream) as progress:
        progress.update(100, 2)
        progress.update(250, 5)
        progress.update(200, 4)  # an older event read late: the line never goes back
        assert stream.getvalue() == ""
    line = stream.getvalue()
    assert line.startswith("orders: 250 rows, 5 pages, ") and "rows/s" in line, line
    assert line.endswith("s elapsed\n") and line.count("\n") == 1, line


def test_summary_and_schedule_words() -> None:
    run = {
        "run_id": "r1",
        "job": "orders",
        "state": "failed",
        "rows_loaded": None,
        "pages": 2,
        "started_at": "2024-05-01T00:00:00+00:00",
        "finished_at": "2024-05-01T00:00:01.5+00:00",
        "error": "HTTP 404",
    }
    assert summary(run) == ["orders: failed — 0 rows, 2 pages, 1.50s (run r1)", "error: HTTP 404"]
    assert schedule_text({"cron": "0 * * * *", "interval": None}) == "cron 0 * * * *"
    assert schedule_text({"interval": "10m", "overlap": "skip"}) == "every 10m"
    assert schedule_text({"after": ["a", "b"]}) == "after a, b"
    assert schedule_text(None) == "-"
