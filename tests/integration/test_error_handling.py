"""Cancel, per-attempt timeouts with retries, and an engine killed mid-run (lease expiry)."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from tests.kit.faults import staged_pages
from tests.kit.jobs import write_job
from tests.kit.ray import running_system, wait_for_run, wait_idle, wait_state

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

SLOW = """
name: {name}
timeout: {timeout}
retries: {{max_attempts: {attempts}, backoff: 100ms, max_backoff: 200ms}}
source:
  url: {url}/items
  paginate: {{type: page}}
destination: {{table: {name}, write: merge, primary_key: [id]}}
"""


def slow_job(
    tmp_path: Path, url: str, name: str = "slow", timeout: str = "5m", attempts: int = 1
) -> None:
    text = SLOW.format(name=name, url=url, timeout=timeout, attempts=attempts)
    write_job(tmp_path / "configs", name, text)


def test_cancel_running_and_queued_runs(
    tmp_path: Path,
    namespace: str,
    slow_server: str,
) -> None:
    slow_job(tmp_path, slow_server)
    with running_system(tmp_path, namespace, engines=1) as rt:
        running = ray.get(rt.scheduler.trigger.remote("slow"))
        wait_state(rt, running, "running")
        queued = ray.get(rt.scheduler.trigger.remote("slow"))  # waits: the only engine is busy
        ray.get(rt.scheduler.cancel.remote(queued))
        ray.get(rt.scheduler.cancel.remote(running))
        assert wait_for_run(rt, running)["state"] == "cancelled"
        assert wait_for_run(rt, queued)["state"] == "cancelled"
        wait_idle(rt)
        assert ray.get(rt.db.list_tables.remote()) == []  # nothing of either was committed
        assert ray.get(rt.db.checkpoint.remote(running)) is None  # its staging is gone
        with pytest.raises(Exception, match="cannot go from 'cancelled'"):
            ray.get(rt.scheduler.cancel.remote(running))
        # the engine is free for the next run
        again = wait_for_run(rt, ray.get(rt.scheduler.trigger.remote("slow")), timeout=60)
        assert again["state"] == "succeeded" and again["rows_loaded"] == 1000


def test_timed_out_attempt_is_retried_then_fails_with_nothing_committed(
    tmp_path: Path,
    namespace: str,
    slow_server: str,
) -> None:
    slow_job(tmp_path, slow_server, timeout="1s", attempts=2)  # a run needs ~4 s
    with running_system(tmp_path, namespace, engines=1) as rt:
        run = wait_for_run(rt, ray.get(rt.scheduler.trigger.remote("slow")), timeout=60)
        logs = [e["message"] for e in ray.get(rt.db.get_logs.remote(run["run_id"]))]
        tables = ray.get(rt.db.list_tables.remote())
    assert run["state"] == "failed" and run["attempt"] == 2
    assert run["error"] == "attempt timed out"
    assert any("-> retrying" in m for m in logs) and any("retrying -> queued" in m for m in logs)
    assert tables == []


def test_engine_killed_mid_run_is_retried_and_resumes_on_a_live_engine(
    tmp_path: Path,
    namespace: str,
    slow_server: str,
) -> None:
    slow_job(tmp_path, slow_server, attempts=3)
    with running_system(tmp_path, namespace, engines=2, lease_seconds=4) as rt:
        run_id = ray.get(rt.scheduler.trigger.remote("slow"))
        wait_state(rt, run_id, "running")
        staged_pages(rt, run_id, 2)  # a few pages staged: the retry resumes after them
        busy = [e for e in rt.engines if ray.get(e.stats.remote())["current_run"] == run_id]
        assert len(busy) == 1
        ray.kill(busy[0], no_restart=False)  # the worker dies; Ray restarts the actor empty
        done = wait_for_run(rt, run_id, timeout=90)
        assert done["state"] == "succeeded", done["error"]
        assert done["attempt"] == 2 and done["rows_loaded"] == 1000
        rows = ray.get(rt.db.query.remote("SELECT count(*), count(DISTINCT id) FROM slow"))
        logs = [e["message"] for e in ray.get(rt.db.get_logs.remote(run_id))]
    assert rows == [(1000, 1000)]
    assert any("engine lost" in m for m in logs)
