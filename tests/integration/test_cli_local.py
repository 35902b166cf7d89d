"""`tg run JOB --local`: the run in the CLI's own process through tg_actors.localrun (no Ray),
against the demo source on 127.0.0.1 and a real DuckDB file: the summary line and the
progress line, `--json`, exit 3 for an unknown job and for a file another process holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.kit.jobs import write_job
from tg_actors.cli.main import main

JOB = "cli_local"


def _job(url: str, name: str = JOB) -> str:
    return (
        f"name: {name}\n"
        "source:\n"
        f"  url: {url}/orders\n"
        "  params: {per_page: 500}\n"
        '  records: "$.data"\n'
        "  paginate: {type: page}\n"
        "destination:\n"
        f"  table: {name}\n"
        "  write: merge\n"
        "  primary_key: [id]\n"
    )


def test_tg_run_local(demo_server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configs = tmp_path / "configs"
    write_job(configs, JOB, _job(demo_server))
    db = tmp_path / "data" / "turbo_giggle.duckdb"
    common = ["--configs", str(configs), "--db", str(db)]

    assert main(["run", JOB, "--local", *common]) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"{JOB}: succeeded — 10000 rows, 21 pages, "), out.out
    # stderr is no terminal under pytest: one plain progress line at the end
    assert out.err.startswith(f"{JOB}: 10000 rows, 21 pages, ") and "rows/s" in out.err, out.err
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute(f"SELECT count(DISTINCT id) FROM {JOB}").fetchone() == (10000,)

    assert main(["run", JOB, "--local", "--json", *common]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["job"] == JOB and doc["state"] == "succeeded" and doc["ok"] is True, doc
    assert doc["rows_loaded"] == 10000 and doc["pages"] == 21, doc

    assert main(["run", "nope", "--local", *common]) == 3
    assert "No job named 'nope'" in capsys.readouterr().out

    # another process holds the file: exit 3, saying so
    hold = "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('held', flush=True);"
    hold += " sys.stdin.read()"
    with subprocess.Popen(
        [sys.executable, "-c", hold, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            assert main(["run", JOB, "--local", *common]) == 3
            assert "is held by another process" in capsys.readouterr().err
        finally:
            holder.kill()
