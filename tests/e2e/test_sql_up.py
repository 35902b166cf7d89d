"""`tg sql` and `tg export` next to a real `tg up` (subprocesses, its own local Ray): while it
runs they go through its API with the token from the `api_token` file beside --db (no
TG_API_TOKEN), the Python Client reads the same; once it has stopped, `tg sql` opens the file
itself and answers the same rows."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.kit.cli import (
    EXIT_TIMEOUT,
    JOB,
    UP_TIMEOUT,
    free_port,
    orders_job,
    run_tg,
    started,
    tg,
    tg_env,
)
from tests.kit.jobs import write_job
from tg_actors.client import Client

pytestmark = [pytest.mark.slow]
QUERY = f"SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(id) AS total FROM {JOB}"


def test_tg_sql_through_tg_up_then_on_the_file(tmp_path: Path) -> None:
    port = free_port()
    configs = tmp_path / "configs"
    write_job(configs, JOB, orders_job(port, interval=False))
    db = tmp_path / "data" / "turbo_giggle.duckdb"
    args = tg("up", "--configs", str(configs), "--db", str(db), "--port", str(port))
    env = tg_env(port)  # no TG_API_TOKEN: `tg sql` reads data/api_token

    def sql(*more: str) -> tuple[int, str]:
        return run_tg(tg("sql", QUERY, "--db", str(db), *more), env, tmp_path, 60)

    with started(args, env, tmp_path) as proc:
        proc.wait_for_line(r"turbo-giggle is up in ([\d.]+)s", UP_TIMEOUT)
        token = (db.parent / "api_token").read_text(encoding="utf-8").strip()
        with Client(f"http://127.0.0.1:{port}", token) as client:
            run = client.trigger(JOB, wait=True, timeout=90, every=0.2)
            assert run["state"] == "succeeded" and run["rows_loaded"] == 2500, run
            through_client = client.sql(QUERY).to_pylist()
        code, out = sql("--format", "json")
        assert code == 0, out
        while_up = json.loads(out)
        assert while_up == [{"n": 2500, "ids": 2500, "total": 3126250}]
        assert [{**r, "total": int(r["total"])} for r in through_client] == while_up
        code, out = run_tg(
            tg("export", JOB, "-o", "orders.parquet", "--db", str(db)), env, tmp_path, 60
        )
        assert code == 0 and "through the running system's API" in out, out
        assert pq.read_table(tmp_path / "orders.parquet").num_rows == 2500
        proc.popen.send_signal(signal.SIGINT)
        assert proc.wait(EXIT_TIMEOUT) == 0, proc.output

    code, out = sql("--format", "json")  # nothing runs now: the file, read-only
    assert code == 0 and json.loads(out) == while_up, out
