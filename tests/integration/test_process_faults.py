"""Process faults on a real local Ray: a SyncEngine's worker killed
with SIGKILL, the Database actor killed mid-run, the Broker actor killed. After each one the
data is exact (row count, distinct keys, checksums) and tg.runs / tg.state are consistent: one
run per trigger, the right final state and attempt, no staging or checkpoint left behind.

(The Scheduler killed mid-stream is tested in test_scheduler_actor.py.)
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.kit.fakeapi import FakeApi, later
from tests.kit.faults import (
    add_job,
    assert_consistent,
    expected,
    pid_of,
    restarted,
    retries_logged,
    source,
    staged_pages,
    totals,
)
from tests.kit.jobs import write_job
from tests.kit.ray import poll_until, running_system, wait_for_run
from tests.kit.servers import serve_app
from tg_actors import runtime
from tg_actors.runtime import Runtime
from tg_actors.settings import Settings

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]

INCREMENTAL_JOB = """
name: {name}
source:
  url: {url}/orders
  params: {{per_page: 100}}
  records: "$.data"
  paginate: {{type: page}}
  incremental: {{cursor_field: updated_at, param: updated_since, initial: "2024-01-01T00:00:00Z"}}
destination: {{table: {name}, write: merge, primary_key: [id]}}
"""


def test_engine_worker_sigkilled_mid_run_resumes_with_exact_rows(
    tmp_path: Path, namespace: str
) -> None:
    with source(rows=1000, per_page=100, delay=0.4) as (url, api):  # ~4.4 s a run
        add_job(tmp_path, "victim", url)
        # a lease far longer than the test: the restarted engine's EngineStarted is what
        # tells the Scheduler its run was lost
        with running_system(tmp_path, namespace, engines=2, lease_seconds=600) as rt:
            run_id = ray.get(rt.scheduler.trigger.remote("victim"))
            staged_pages(rt, run_id, 2)
            busy = [e for e in rt.engines if run_id in ray.get(e.stats.remote())["current_runs"]]
            assert len(busy) == 1
            pid = pid_of(busy[0])
            assert pid is not None
            os.kill(pid, signal.SIGKILL)  # the worker process dies at once, mid-page
            done = wait_for_run(rt, run_id, timeout=60)
            assert done["state"] == "succeeded", done["error"]
            # attempt 1 failed when the engine came back, attempt 2 resumed and committed
            assert done["attempt"] == 2 and done["rows_loaded"] == 1000
            assert retries_logged(rt, run_id) == 1
            logs = [e["message"] for e in ray.get(rt.db.get_logs.remote(run_id))]
            assert any("engine lost" in m and "restarted" in m for m in logs), logs
            assert totals(rt, "victim") == expected(api)
            assert_consistent(rt, {"victim": 1})
            restarted(busy[0], pid)  # Ray brought the killed engine back, in a new process
    pages = [q.get("page", "1") for q in api.stats["queries"]]
    assert pages.count("1") == 1  # resumed: the staged pages were not fetched again
    assert set(pages) == {str(p) for p in range(1, 12)}  # 10 pages and the empty 11th


def test_database_killed_mid_run_restarts_keeps_commits_and_retries_the_run(
    tmp_path: Path, namespace: str
) -> None:
    fake = FakeApi()
    fake.add(1, 150)
    fake.add(151, 100, later(5))
    with (
        serve_app(fake.app()) as fake_url,
        source(rows=3000, per_page=50, delay=0.03) as (url, api),  # 60 pages, ~3 s
    ):
        write_job(
            tmp_path / "configs", "earlier", INCREMENTAL_JOB.format(name="earlier", url=fake_url)
        )
        add_job(tmp_path, "big", url, per_page=50)
        with running_system(tmp_path, namespace, engines=2, lease_seconds=3) as rt:
            # committed before the kill: an incremental run (rows + cursor) and a first load
            first = wait_for_run(rt, ray.get(rt.scheduler.trigger.remote("earlier")), timeout=60)
            assert first["state"] == "succeeded" and first["rows_loaded"] == 250
            cursor = ray.get(rt.db.cursor.remote("earlier"))
            assert cursor is not None
            load = wait_for_run(rt, ray.get(rt.scheduler.trigger.remote("big")), timeout=60)
            assert load["state"] == "succeeded" and load["rows_loaded"] == 3000

            # watch the target table through the drill: it holds one load or two, never part
            seen: list[int] = []
            stop = threading.Event()

            def watch() -> None:
                while not stop.is_set():
                    try:
                        seen.append(totals(rt, "big")[0])
                    except Exception:  # the Database restarting
                        pass
                    stop.wait(0.02)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            try:
                run_id = ray.get(rt.scheduler.trigger.remote("big"))
                staged_pages(rt, run_id, 10)
                old = pid_of(rt.db)
                assert old is not None
                ray.kill(rt.db, no_restart=False)  # SIGKILL of the one DuckDB writer
                restarted(rt.db, old)
                done = wait_for_run(rt, run_id, timeout=60)
            finally:
                stop.set()
                watcher.join(timeout=10)
            assert done["state"] == "succeeded", done["error"]
            assert done["rows_loaded"] == 3000
            # the kill broke the attempt's call in flight: it failed, one retry resumed it
            assert done["attempt"] == 1 + retries_logged(rt, run_id) <= 2
            assert 3000 in seen and set(seen) <= {3000, 6000}, sorted(set(seen))
            count, keys, ids, cents = expected(api)
            assert totals(rt, "big") == (2 * count, keys, 2 * ids, 2 * cents)
            # what was committed before the kill is intact (replayed from the WAL)
            assert totals(rt, "earlier") == expected(fake)
            assert ray.get(rt.db.cursor.remote("earlier")) == cursor
            assert_consistent(rt, {"earlier": 1, "big": 2})
    pages = [int(q.get("page", "1")) for q in api.stats["queries"]]
    assert pages.count(1) == 2  # once per load: the retry resumed after the staged pages


def broker_ready(rt: Runtime, engines: int) -> dict[str, Any] | None:
    """The broker's stats once every consumer group is back after a restart."""
    try:
        stats: dict[str, Any] = ray.get(rt.broker.stats.remote(), timeout=5)
    except Exception:
        return None
    want = {
        "triggers": {"engines"},
        "status": {"scheduler", "scheduler-leases", "database"},
        "config": {"scheduler"},
        "control": {f"engine:engine-{i}" for i in range(engines)},
    }
    have = {topic: set(groups) for topic, groups in stats.items()}
    return stats if all(groups <= have.get(t, set()) for t, groups in want.items()) else None


def kill_the_broker_mid_run(
    rt: Runtime, engines: int, shared: bool, slow_api: Any, quick_api: Any
) -> None:
    """Kill the broker while job `inflight` runs: the restarted broker re-creates every group
    (the engines' one as a shared queue or a plain group, `shared`), the run in flight ends
    succeeded exactly once, and one of job `later` triggered after it goes through."""
    run_id = runtime.resolve(rt.scheduler.trigger.remote("inflight"))
    staged_pages(rt, run_id, 2)
    old = pid_of(rt.broker)
    assert old is not None
    ray.kill(rt.broker, no_restart=False)  # its topics, groups and work queue die
    restarted(rt.broker, old)
    stats = poll_until("consumer groups back", lambda: broker_ready(rt, engines), 30)
    assert (stats["triggers"]["engines"].get("shared") is True) is shared, stats
    done = wait_for_run(rt, run_id, timeout=60)
    assert done["state"] == "succeeded", done["error"]
    assert done["rows_loaded"] == 1000
    # a heartbeat held up by the restart may cost it its lease, and a dispatch or a
    # `retrying` event published while the broker is down is lost with it (RELIABILITY,
    # "Events in flight are lost"): one more lease, a log line fewer than the attempts
    assert 1 + retries_logged(rt, run_id) <= done["attempt"] <= 3
    assert totals(rt, "inflight") == expected(slow_api)
    # a run triggered after the kill goes through the new group at its first attempt
    fresh = wait_for_run(rt, runtime.resolve(rt.scheduler.trigger.remote("later")), timeout=30)
    assert fresh["state"] == "succeeded" and fresh["attempt"] == 1, fresh["error"]
    assert totals(rt, "later") == expected(quick_api)
    assert_consistent(rt, {"inflight": 1, "later": 1})


def test_broker_killed_topics_come_back_and_runs_go_on(tmp_path: Path, namespace: str) -> None:
    with (
        source(rows=1000, per_page=100, delay=0.4) as (slow_url, slow_api),
        source(rows=300, per_page=100, delay=0.0) as (quick_url, quick_api),
    ):
        add_job(tmp_path, "inflight", slow_url)
        add_job(tmp_path, "later", quick_url)
        with running_system(tmp_path, namespace, engines=2, lease_seconds=3) as rt:
            assert broker_ready(rt, 2) is not None
            kill_the_broker_mid_run(rt, 2, True, slow_api, quick_api)

            # config changes reach the Scheduler through the new broker too
            ray.get(rt.config.set_paused.remote("later", True))
            poll_until(
                "pause to reach the scheduler",
                lambda: ray.get(rt.scheduler.job_status.remote("later"))["later"]["paused"] or None,
                15,
            )
            # and a cancel reaches the engine on its run: it stops and drops what it staged
            # (missed, the run would go on, be refused at its commit and leave its staging)
            cancelled = ray.get(rt.scheduler.trigger.remote("inflight"))
            staged_pages(rt, cancelled, 1)
            ray.get(rt.scheduler.cancel.remote(cancelled))
            assert wait_for_run(rt, cancelled, timeout=30)["state"] == "cancelled"
            poll_until(
                "the cancelled run's staging to be dropped",
                lambda: ray.get(rt.db.staged_run_ids.remote()) == [] or None,
                15,
            )
            assert ray.get(rt.db.query.remote("SELECT count(*) FROM tg.run_checkpoints")) == [(0,)]
            assert totals(rt, "inflight") == expected(slow_api)


def test_broker_killed_under_a_one_off_run_its_lone_engine_reads_the_new_group(
    tmp_path: Path, namespace: str
) -> None:
    """`tg run`'s engine reads a plain group, not a shared queue (engine/work.py): the
    restarted broker re-creates it as such, and the run in flight and the next one load
    their rows exactly once."""
    with (
        source(rows=1000, per_page=100, delay=0.4) as (slow_url, slow_api),
        source(rows=300, per_page=100, delay=0.0) as (quick_url, quick_api),
    ):
        add_job(tmp_path, "inflight", slow_url)
        add_job(tmp_path, "later", quick_url)
        settings = Settings(
            configs=tmp_path / "configs",
            db_path=tmp_path / "data" / "one_off.duckdb",
            namespace=namespace,
            engines=1,
            lease_seconds=3,
        )
        rt = runtime.start(settings, schedules=False, serve_app=False, one_off=True)
        try:
            kill_the_broker_mid_run(rt, 1, False, slow_api, quick_api)
        finally:
            runtime.stop(rt)
