"""End-to-end: the `tg` CLI as a user runs it, in subprocesses, each with its own local Ray.

Every wait is bounded. Whatever a test starts runs in its own session (process group) and is
killed by PID / process group if the test fails; nothing is ever killed by name (the process
helpers are in tests/kit/cli.py).
"""

from __future__ import annotations

import re
import signal
import stat
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from tests.kit.cli import (
    EXIT_TIMEOUT,
    JOB,
    RUN_TIMEOUT,
    UP_TIMEOUT,
    alive,
    describe,
    free_port,
    non_loopback_listeners,
    orders_job,
    poll,
    psutil,
    run_tg,
    started,
    tg,
    tg_env,
)
from tests.kit.jobs import write_job

pytestmark = [pytest.mark.slow]


# -- tg up -------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_up_serves_syncs_and_stops_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    port = free_port()
    configs = tmp_path / "configs"
    write_job(configs, JOB, orders_job(port, interval=True))
    db = tmp_path / "data" / "turbo_giggle.duckdb"
    args = tg("up", "--configs", str(configs), "--db", str(db), "--host", "127.0.0.1")
    args += ["--port", str(port)]
    base = f"http://127.0.0.1:{port}"

    with started(args, tg_env(port), tmp_path) as proc:
        up = proc.wait_for_line(r"turbo-giggle is up in ([\d.]+)s", UP_TIMEOUT)
        proc.wait_for_line(rf"^\s+UI:\s+http://127\.0\.0\.1:{port}/$", 5)
        token_file = Path(proc.wait_for_line(r"^\s+token:\s+(.+)$", 5)[1].strip())
        assert token_file == db.parent / "api_token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text(encoding="utf-8").strip()
        assert token

        with httpx.Client(base_url=base, timeout=10.0) as client:

            def healthy() -> dict[str, Any] | None:
                body: dict[str, Any] = client.get("/api/health").json()
                return body if body.get("status") == "ok" else None

            health = poll("GET /api/health ok", healthy, 30)
            assert set(health["components"].values()) == {"alive"}
            assert client.get("/api/runs").status_code == 401  # the token is required

            auth = {"Authorization": f"Bearer {token}"}

            def succeeded_runs() -> list[dict[str, Any]]:
                r = client.get("/api/runs", params={"job": JOB}, headers=auth)
                r.raise_for_status()
                return [run for run in r.json() if run["state"] == "succeeded"]

            runs = poll("a succeeded run", succeeded_runs, 90)
            assert runs[0]["rows_loaded"] == 2500

        proc.record_descendants()
        assert proc.descendants, "tg up started no child processes (no Ray?)"
        exposed = non_loopback_listeners([psutil.Process(proc.pid), *proc.descendants.values()])
        assert not exposed, f"listening beyond loopback: {exposed}"
        began = time.monotonic()
        proc.popen.send_signal(signum)
        rc = proc.wait(EXIT_TIMEOUT)
        stop_s = time.monotonic() - began
        assert rc == 0, f"exit code {rc}:\n{proc.output}"
        assert "stopped; DuckDB closed cleanly." in proc.lines, proc.output

        def none_left() -> bool:
            return not any(alive(p) for p in proc.descendants.values())

        leftover = "Ray processes left behind"
        with suppress(AssertionError):
            poll(leftover, none_left, 10, every=0.25)
        left = {pid: describe(p) for pid, p in proc.descendants.items() if alive(p)}
        assert not left, f"{leftover}: {left}"

    con = duckdb.connect(str(db), read_only=True)
    try:
        ids = con.execute(f"SELECT count(DISTINCT id), count(*) FROM main.{JOB}").fetchone()
        assert ids == (2500, 2500)
        assert con.execute("SELECT name FROM tg.jobs").fetchall() == [(JOB,)]
        states = dict(
            con.execute(
                "SELECT state, count(*) FROM tg.runs WHERE job = ? GROUP BY state", [JOB]
            ).fetchall()
        )
        assert states.get("succeeded", 0) >= len(runs), states
        assert con.execute(
            "SELECT min(rows_loaded), max(rows_loaded) FROM tg.runs WHERE state = 'succeeded'"
        ).fetchone() == (2500, 2500)
    finally:
        con.close()
    print(f"{signum.name}: up in {up[1]}s, stopped in {stop_s:.1f}s, runs {states}")


def test_up_refuses_a_db_named_tg(tmp_path: Path) -> None:
    port = free_port()
    began = time.monotonic()
    rc, out = run_tg(tg("up", "--db", "x/tg.duckdb"), tg_env(port), tmp_path, timeout=60)
    assert rc != 0, out
    assert "clashes with the schema 'tg'" in out
    assert "x/tg.duckdb" in out
    assert not (tmp_path / "x").exists()
    assert time.monotonic() - began < 60


# -- tg run ------------------------------------------------------------------------------------


def test_run_once_success_failure_and_unknown_job(tmp_path: Path) -> None:
    port = free_port()
    configs = tmp_path / "configs"
    write_job(configs, JOB, orders_job(port, interval=False))
    write_job(
        configs,
        "e2e_missing",
        orders_job(port, name="e2e_missing", path="/demo/nope", interval=False),
    )
    db = tmp_path / "data" / "turbo_giggle.duckdb"
    env = tg_env(port)
    common = ["--configs", str(configs), "--db", str(db)]

    rc, out = run_tg(tg("run", JOB, *common), env, tmp_path, RUN_TIMEOUT)
    assert rc == 0, out
    pattern = rf"^{JOB}: succeeded — 2500 rows, (\d+) pages, (\d+\.\d\d)s \(run (\w+)\)$"
    assert re.search(pattern, out, re.MULTILINE), out
    # stderr is no terminal here: the progress line comes once, as a plain summary
    assert re.search(rf"^{JOB}: 2500 rows, \d+ pages, \d+ rows/s, [\d.]+s elapsed$", out, re.M), out

    rc, out = run_tg(tg("run", "e2e_missing", *common), env, tmp_path, RUN_TIMEOUT)
    assert rc == 1, out
    assert re.search(r"^e2e_missing: failed — 0 rows", out, re.MULTILINE), out
    assert re.search(r"^error: .*404", out, re.MULTILINE), out

    rc, out = run_tg(tg("run", "nope", *common), env, tmp_path, RUN_TIMEOUT)
    assert rc == 3, out  # not found: checked before any Ray starts
    assert "No job named 'nope'" in out
    assert "progress" not in out and "rows/s" not in out, out  # nothing ran

    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute(f"SELECT count(DISTINCT id) FROM main.{JOB}").fetchone() == (2500,)
        states = con.execute("SELECT job, state FROM tg.runs ORDER BY job").fetchall()
        assert states == [("e2e_missing", "failed"), (JOB, "succeeded")]
    finally:
        con.close()


# -- tg validate -------------------------------------------------------------------------------


def test_validate_reports_each_error_by_file_and_field(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    good = write_job(configs, "good", orders_job(8000, name="good", interval=False))
    bad = write_job(
        configs,
        "bad",
        orders_job(8000, name="bad", interval=False)
        .replace("param: page,", "parm: page,")
        .replace("  primary_key: [id]\n", ""),
    )
    rc, out = run_tg(tg("validate", str(configs / "jobs")), tg_env(free_port()), tmp_path, 60)
    assert rc == 1, out
    lines = out.splitlines()
    assert any(
        re.fullmatch(
            rf"{re.escape(str(bad))}:\d+:\d+: source\.paginate\.parm: unknown field;"
            r" did you mean `param`\?",
            line,
        )
        for line in lines
    ), out
    assert any(
        re.fullmatch(rf"{re.escape(str(bad))}:\d+:1: destination: .*primary_key.*", line)
        for line in lines
    ), out
    assert f"{good}: ok (job good)" in lines, out
