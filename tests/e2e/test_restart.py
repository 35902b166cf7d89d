"""Crash and restart: `tg up` and every Ray process it started are SIGKILLed
while a run is in flight; `tg up` again on the same DuckDB file and configs.

The run in flight (a slow paginated source, merge on a primary key, every page staged with a
checkpoint) is the same run afterwards: the Scheduler puts it back to `queued` under the same
run id and attempt, and it resumes after its last staged page. Jobs, run history, the
incremental cursor and the data committed before the crash are all still there, the run's
rows land exactly once, and no staging table or checkpoint is left.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any

import duckdb
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from demo.app import build_demo_app
from tests.kit.cli import alive, free_port, poll, psutil, started, tg_env
from tests.kit.harness import boot, db_tables, tg_up, up_command
from tests.kit.jobs import write_job
from tests.kit.servers import serve_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PAGES, PER_PAGE, DELAY = 10, 100, 0.5  # ~5.5 s a run
DEMO_ROWS = 1000


class SlowSource:
    """`/slow/items?page=N`: PER_PAGE rows after DELAY seconds, [] after page PAGES; every
    page asked for is recorded. `/demo/orders`: the demo source (incremental by updated_at)."""

    def __init__(self) -> None:
        self.pages: list[int] = []
        self.lock = threading.Lock()

        async def items(request: Request) -> JSONResponse:
            page = int(request.query_params.get("page", "1"))
            with self.lock:
                self.pages.append(page)
            await asyncio.sleep(DELAY)
            if page > PAGES:
                return JSONResponse([])
            first = (page - 1) * PER_PAGE
            rows = [{"id": first + i, "page": page} for i in range(1, PER_PAGE + 1)]
            return JSONResponse(rows)

        self.app = Starlette(
            routes=[Route("/slow/items", items), Mount("/demo", app=build_demo_app(DEMO_ROWS))]
        )

    def seen(self) -> list[int]:
        with self.lock:
            return list(self.pages)


def jobs(configs: Path, source: str) -> None:
    write_job(
        configs,
        "slow",
        "name: slow\n"
        "source:\n"
        f"  url: {source}/slow/items\n"
        "  paginate: {type: page}\n"
        "  checkpoint_rows: 100\n"  # every page is staged with its checkpoint
        "destination: {table: slow, write: merge, primary_key: [id]}\n",
    )
    write_job(
        configs,
        "inc",
        "name: inc\n"
        "source:\n"
        f"  url: {source}/demo/orders\n"
        "  params: {per_page: 250}\n"
        '  records: "$.data"\n'
        "  paginate: {type: page}\n"
        "  incremental: {cursor_field: updated_at, param: updated_since, "
        'initial: "2024-01-01T00:00:00Z"}\n'
        "destination: {table: inc, write: merge, primary_key: [id]}\n",
    )


def snapshot(db: Path) -> dict[str, Any]:
    """What the DuckDB file holds, read-only (tg is not running)."""
    con = duckdb.connect(str(db), read_only=True)
    try:

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return con.execute(sql).fetchall()

        data = {}
        for table in ("inc", "slow"):
            if ("main", table) in db_tables(con, ("main",)):
                data[table] = rows(
                    f"SELECT count(*), count(DISTINCT id), sum(id), sum(hash(t)) FROM main.{table} t"
                )[0]
        return {
            "jobs": rows(
                "SELECT name, spec, paused, origin, created_at FROM tg.jobs ORDER BY name"
            ),
            "runs": {r[0]: r for r in rows("SELECT * FROM tg.runs ORDER BY queued_at")},
            "cursors": rows("SELECT job, cursor, run_id FROM tg.state ORDER BY job"),
            "data": data,
            "checkpoints": {
                r[0]: (json.loads(r[1]), r[2], r[3])
                for r in rows("SELECT run_id, checkpoint, pages, rows FROM tg.run_checkpoints")
            },
            "staged": [t for s, t in db_tables(con, ("tg",)) if t.startswith("stage_")],
            "logs": rows("SELECT run_id, level, message FROM tg.run_logs ORDER BY ts"),
        }
    finally:
        con.close()


def unlocked(db: Path) -> bool:
    try:
        duckdb.connect(str(db), read_only=True).close()
    except duckdb.IOException as exc:
        if "lock" in str(exc):
            return False
        raise
    return True


def kill_tree(pid: int, descendants: dict[int, psutil.Process]) -> list[int]:
    """SIGKILL the tg process and every descendant, by PID; waits until all are gone.

    Everything is frozen (SIGSTOP) first, re-reading the tree until no new process shows up,
    and only then killed: killed one by one, a Ray actor dying before the raylet would be
    restarted (`max_restarts=-1`) in a fresh process outside the list, holding the DuckDB file.
    Returns the PIDs killed."""
    root = psutil.Process(pid)
    frozen: dict[int, psutil.Process] = {}
    while True:
        with suppress(psutil.NoSuchProcess):
            descendants.update({p.pid: p for p in root.children(recursive=True)})
        fresh = [p for p in [root, *descendants.values()] if p.pid not in frozen and alive(p)]
        if not fresh:
            break
        for proc in fresh:
            with suppress(psutil.NoSuchProcess):
                proc.suspend()  # psutil checks the create time: a reused PID is left alone
            frozen[proc.pid] = proc
    for proc in frozen.values():
        with suppress(psutil.NoSuchProcess):
            proc.kill()
    victims = list(frozen.values())
    poll("killed processes gone", lambda: not any(alive(p) for p in victims), 30, every=0.2)
    return [p.pid for p in victims]


def test_sigkill_mid_run_then_restart(tmp_path: Path) -> None:
    port = free_port()
    configs = tmp_path / "configs"
    db = tmp_path / "data" / "turbo_giggle.duckdb"
    source = SlowSource()

    with serve_app(source.app) as base:
        jobs(configs, base)
        with started(up_command(configs, db, port), tg_env(port), tmp_path) as first_proc:
            first = boot(first_proc, port)
            inc_run = first.trigger("inc")
            assert first.wait_ended([inc_run], 90)[inc_run]["state"] == "succeeded"
            slow_run = first.trigger("slow")
            first.wait_state(slow_run, "running", 60)
            # a few pages in: some staged with their checkpoint, most still to come
            poll("4 pages asked for", lambda: len(source.seen()) >= 4, 30, every=0.1)
            tree = first.tree()
            assert len(tree) > 5, [p.name() for p in tree]  # tg and Ray's processes
            pages_before_kill = source.seen()
            killed = kill_tree(first_proc.pid, first_proc.descendants)
            first.client.close()
            assert first_proc.wait(10) == -signal.SIGKILL
        assert pages_before_kill[:4] == [1, 2, 3, 4], pages_before_kill

        # a killed process is a zombie before its last thread is gone and its files closed
        poll("the DuckDB file unlocked", lambda: unlocked(db), 30, every=0.2)
        before = snapshot(db)
        assert before["runs"][slow_run][2] == "running", before["runs"][slow_run]
        assert before["runs"][inc_run][2] == "succeeded"
        assert before["cursors"] and before["cursors"][0][0] == "inc", before["cursors"]
        assert before["data"]["inc"][:3] == (DEMO_ROWS, DEMO_ROWS, DEMO_ROWS * (DEMO_ROWS + 1) // 2)
        assert "slow" not in before["data"]  # nothing of the run reached its table
        checkpoint, staged_pages, staged_rows = before["checkpoints"][slow_run]
        assert staged_pages >= 1 and staged_rows == staged_pages * PER_PAGE, before["checkpoints"]
        assert before["staged"] == [f"stage_{slow_run}"], before["staged"]

        served_first = len(source.seen())
        with tg_up(configs, db, port, tmp_path) as second:
            done = second.wait_ended([slow_run], 120)[slow_run]
            after_runs = second.get("/api/runs", limit=1000)
            jobs_listed = {j["name"] for j in second.get("/api/jobs")}
            stop_s = second.stop()
        resumed_pages = source.seen()[served_first:]

    after = snapshot(db)
    # the run in flight: the same run, succeeded, all its rows exactly once. Re-dispatched
    # under the next attempt number, which fences off the attempt that was cut off
    assert done["state"] == "succeeded", done
    assert done["attempt"] == 2, done
    assert done["rows_loaded"] == PAGES * PER_PAGE, done
    assert done["pages"] == PAGES + 1, done  # the empty page that ends it counts
    assert done["error"] is None, done
    # it resumed right after its last staged page, and asked for no page twice
    assert resumed_pages == list(range(staged_pages + 1, PAGES + 2)), (staged_pages, resumed_pages)
    # no new run: the history holds exactly the two runs, each job's once
    assert sorted(r["run_id"] for r in after_runs) == sorted([inc_run, slow_run]), after_runs
    assert set(after["runs"]) == {inc_run, slow_run}
    assert after["runs"][inc_run] == before["runs"][inc_run]  # untouched
    old, new = before["runs"][slow_run], after["runs"][slow_run]
    # id, job, trigger, ... the same; the attempt one up (the re-dispatch's fence)
    assert new[:8] == old[:2] + ("succeeded", old[3], old[4] + 1) + old[5:8], (old, new)
    # jobs, cursor and the data committed before the crash: unchanged
    assert jobs_listed == {"inc", "slow"}
    changed = [
        (b[0], field, x, y)
        for b, a in zip(before["jobs"], after["jobs"], strict=True)
        for field, x, y in zip(
            ("name", "spec", "paused", "origin", "created_at"), b, a, strict=True
        )
        if x != y
    ]
    assert not changed, changed
    assert after["cursors"] == before["cursors"]
    assert after["data"]["inc"] == before["data"]["inc"]
    n = PAGES * PER_PAGE
    assert after["data"]["slow"][:3] == (n, n, n * (n + 1) // 2), after["data"]["slow"]
    # nothing left over from the crash
    assert after["staged"] == [] and after["checkpoints"] == {}, after
    # its log: back to `queued` once (the restart), then running and succeeded once
    slow_logs = [m for r, _, m in after["logs"] if r == slow_run]
    assert [m for m in slow_logs if m.startswith("state ")] == [
        "state - -> queued (manual)",
        "state queued -> running (manual)",
        "state running -> queued (manual)",
        "state queued -> running (manual)",
        "state running -> succeeded (manual)",
    ], slow_logs
    print(
        f"restart drill: killed {len(killed)} processes after {len(pages_before_kill)} pages "
        f"({staged_pages} staged); restart up in {second.up_s:.1f}s; the run resumed at page "
        f"{resumed_pages[0]} and succeeded ({done['rows_loaded']} rows); stopped in "
        f"{stop_s:.1f}s; run log: {slow_logs}"
    )
