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


TG = str(Path(sys.executable).parent / "tg")


def test_the_tg_script_exits_at_once_with_output_and_file_intact(
    demo_server: str, tmp_path: Path
) -> None:
    """The `tg` script skips the interpreter's teardown after a local run (os._exit): its
    output is all there, the exit code is the run's, the DuckDB file is whole and closed."""
    configs = tmp_path / "configs"
    write_job(configs, JOB, _job(demo_server))
    write_job(configs, "cli_gone", _job("http://127.0.0.1:9", name="cli_gone"))
    db = tmp_path / "data" / "turbo_giggle.duckdb"
    common = ["--configs", str(configs), "--db", str(db)]

    done = subprocess.run([TG, "run", JOB, "--local", "--json", *common], capture_output=True)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # the whole document, flushed before the exit
    assert doc["state"] == "succeeded" and doc["rows_loaded"] == 10000, doc
    with duckdb.connect(str(db)) as con:  # a write open: nothing else holds the file
        assert con.execute(f"SELECT count(*) FROM {JOB}").fetchone() == (10000,)
        assert con.execute("SELECT state FROM tg.runs").fetchall() == [("succeeded",)]

    failed = subprocess.run([TG, "run", "cli_gone", "--local", *common], capture_output=True)
    assert failed.returncode == 1, failed.stderr
    assert b"cli_gone: failed" in failed.stdout, failed.stdout


def test_a_local_run_refuses_only_the_imports_it_never_uses() -> None:
    """pandas (which pyarrow imports at its first array, only to ask about pandas objects)
    and httpx's own command line are refused in `tg run --local`'s process; pyarrow, DuckDB
    and httpx work without them."""
    code = (
        "import sys\n"
        "from tg_actors import unused\n"
        "unused.refuse('a test')\n"
        "import duckdb, httpx, pyarrow as pa\n"
        "t = pa.table({'a': pa.array([1, 2])})\n"
        "assert duckdb.sql('SELECT sum(a) FROM t').fetchall() == [(3,)]\n"
        "assert httpx.URL('http://127.0.0.1/x').path == '/x'\n"
        "try:\n"
        "    import pandas\n"
        "except ModuleNotFoundError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('pandas imported')\n"
        "print(sorted(m for m in ('pandas', 'httpx._main') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
