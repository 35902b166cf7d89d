"""A real paginated HTTP source through every actor into a real DuckDB file."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest
import ray

from demo.app import demo_orders
from tests.kit.jobs import write_job
from tests.kit.ray import drained, pause, running_system, wait_for_run, wait_runs
from tests.kit.servers import DEMO_ROWS

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

ORDERS_JOB = """
name: orders
source:
  url: {url}/orders
  params: {{per_page: 500}}
  records: "$.data"
  paginate: {{type: page, param: page, start: 1}}
destination: {{table: orders, write: merge, primary_key: [id]}}
"""


def test_paginated_source_lands_exactly_and_merge_adds_no_duplicates(
    tmp_path: Path,
    namespace: str,
    demo_server: str,
) -> None:
    write_job(tmp_path / "configs", "orders", ORDERS_JOB.format(url=demo_server))
    expected_sum = round(sum(o["amount"] for o in demo_orders(DEMO_ROWS)), 2)
    with running_system(tmp_path, namespace) as rt:
        first = wait_for_run(rt, ray.get(rt.scheduler.trigger.remote("orders")))
        assert first["state"] == "succeeded", first["error"]
        assert first["rows_loaded"] == DEMO_ROWS
        assert first["trigger"] == "manual"
        second = wait_for_run(rt, ray.get(rt.scheduler.trigger.remote("orders")))
        assert second["state"] == "succeeded", second["error"]
        # engine events reach tg.run_logs through the status topic, just after the commit
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            messages = [e["message"] for e in ray.get(rt.db.get_logs.remote(second["run_id"]))]
            if any("state running -> succeeded" in m for m in messages):
                break
            time.sleep(0.1)
        assert any("loaded 10000 rows from 21 pages" in m for m in messages), messages
        db_path = ray.get(rt.db.path.remote())
    # after a clean stop the file opens in DuckDB with every committed row
    with duckdb.connect(db_path, read_only=True) as con:
        count, distinct, total = con.execute(
            "SELECT count(*), count(DISTINCT id), round(sum(amount), 2) FROM main.orders"
        ).fetchone()
        assert (count, distinct) == (DEMO_ROWS, DEMO_ROWS)
        assert total == pytest.approx(expected_sum)
        nested = con.execute("SELECT shipping.city FROM main.orders WHERE id = 1").fetchone()
        assert nested is not None and isinstance(nested[0], str)
        runs = con.execute("SELECT state, rows_loaded FROM tg.runs ORDER BY queued_at").fetchall()
        assert runs == [("succeeded", DEMO_ROWS), ("succeeded", DEMO_ROWS)]
        assert con.execute("SELECT name FROM tg.jobs").fetchall() == [("orders",)]


def test_failed_run_leaves_the_table_untouched(
    tmp_path: Path,
    namespace: str,
    demo_server: str,
) -> None:
    write_job(
        tmp_path / "configs",
        "broken",
        ORDERS_JOB.format(url=demo_server)
        .replace("name: orders", "name: broken")
        .replace("/orders", "/no_such_route"),
    )
    with running_system(tmp_path, namespace, engines=1) as rt:
        run = wait_for_run(rt, ray.get(rt.scheduler.trigger.remote("broken")))
        assert run["state"] == "failed"
        assert "404" in run["error"] and "/no_such_route" in run["error"]
        assert ray.get(rt.db.list_tables.remote()) == []


INTERVAL_JOB = """
name: ticker
schedule: {{interval: 1s, overlap: skip, catchup: none}}
source:
  url: {url}/orders
  params: {{per_page: 5}}
  records: "$.data"
  max_pages: 1
destination: {{table: ticks, write: append}}
"""


def test_interval_job_fires_once_per_tick_in_a_window(
    tmp_path: Path,
    namespace: str,
    demo_server: str,
) -> None:
    """Smoke check end to end, through wall-clock ticks: once per tick with no gap and no
    double, skip, and nothing after a pause are proven on a stepped clock in
    tests/unit/test_scheduler_ticks.py."""
    write_job(tmp_path / "configs", "ticker", INTERVAL_JOB.format(url=demo_server))
    with running_system(tmp_path, namespace) as rt:
        began = time.time()

        def seven_ticks(runs: list[dict[str, Any]]) -> bool:
            return len([r for r in runs if r["scheduled_for"].timestamp() >= began]) >= 7

        wait_runs(rt, "ticker", "7 ticks since the start", seven_ticks)
        paused_at = pause(rt, "ticker")  # the Scheduler has heard it: it fires nothing more
        runs = drained(rt, "ticker")  # the last run has ended
    ticks = sorted(r["scheduled_for"].timestamp() for r in runs)
    # anchored: ticks on whole seconds, one per second, none missing, none doubled
    assert all(t == int(t) for t in ticks)
    assert ticks == [ticks[0] + i for i in range(len(ticks))]
    # the Scheduler was up before the system answered healthy: ticks before `began` are on
    # time too. Every whole second in the window fired (the last may fall after the pause),
    # and nothing fired a second past the pause
    window = list(range(math.ceil(began), math.floor(paused_at)))
    assert len(window) >= 6  # 7 ticks from `began` on: as long as the old 6.5 s window
    assert set(window) <= set(ticks)
    assert max(ticks) <= paused_at + 1
    assert {r["state"] for r in runs} <= {"succeeded", "skipped"}
    done = sorted((r["started_at"], r["finished_at"]) for r in runs if r["state"] == "succeeded")
    assert len(done) >= len(window) - 2
    for (_, end), (start, _) in zip(done, done[1:], strict=False):
        assert end <= start  # overlap: skip -> never two runs at once
