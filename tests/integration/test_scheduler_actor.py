"""The Scheduler on a real Ray: restart in the middle of a run, `after` triggers, priorities,
overlap policies and a restart in the middle of a stream of ticks.

What the Scheduler fires and when (once per tick, overlap, catch-up, pause) is proven on a
stepped clock in tests/unit/test_scheduler_ticks.py; the tick tests here are smoke checks of
the same promises end to end, and wait for conditions (runs done, a pause heard), never for a
window of wall time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.kit.faults import pid_of, restarted
from tests.kit.jobs import write_job
from tests.kit.ray import (
    drained,
    pause,
    poll_until,
    running_system,
    wait_for_run,
    wait_idle,
    wait_ready,
    wait_runs,
    wait_state,
)

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

SLOW_JOB = """
name: {name}
priority: {priority}
source:
  url: {url}/items
  paginate: {{type: page}}
destination: {{table: {name}, write: merge, primary_key: [id]}}
"""


def test_scheduler_restart_mid_run_neither_loses_nor_doubles_it(
    tmp_path: Path,
    namespace: str,
    slow_server: str,
) -> None:
    write_job(
        tmp_path / "configs", "slow", SLOW_JOB.format(name="slow", priority=50, url=slow_server)
    )
    with running_system(tmp_path, namespace, engines=1) as rt:
        run_id = ray.get(rt.scheduler.trigger.remote("slow"))
        wait_state(rt, run_id, "running")
        old_pid = pid_of(rt.scheduler)
        assert old_pid is not None
        ray.kill(rt.scheduler, no_restart=False)  # a crash: Ray restarts it, __init__ reboots it
        restarted(rt.scheduler, old_pid)
        wait_ready(rt.scheduler)  # jobs and open runs reloaded: it takes triggers again
        finished = wait_for_run(rt, run_id, timeout=60)
        assert finished["state"] == "succeeded", finished["error"]
        assert finished["rows_loaded"] == 1000 and finished["attempt"] == 1
        # the restarted scheduler is live: it takes new triggers and tracks their end
        again = wait_for_run(rt, ray.get(rt.scheduler.trigger.remote("slow"), timeout=60))
        assert again["state"] == "succeeded"
        runs = ray.get(rt.db.list_runs.remote(job="slow"))
        assert sorted(r["run_id"] for r in runs) == sorted([run_id, again["run_id"]])
        assert wait_idle(rt)["queue_depth"] == 0


def test_higher_priority_dispatched_first_when_engines_are_busy(
    tmp_path: Path,
    namespace: str,
    slow_server: str,
) -> None:
    for name, prio in (("blocker", 50), ("low", 10), ("high", 90), ("mid", 50)):
        write_job(
            tmp_path / "configs", name, SLOW_JOB.format(name=name, priority=prio, url=slow_server)
        )
    with running_system(tmp_path, namespace, engines=1, engine_slots=1) as rt:
        blocker = ray.get(rt.scheduler.trigger.remote("blocker"))
        wait_state(rt, blocker, "running")
        ids = {name: ray.get(rt.scheduler.trigger.remote(name)) for name in ("low", "high", "mid")}
        assert ray.get(rt.scheduler.status.remote())["queue_depth"] == 3
        runs = {name: wait_for_run(rt, run_id, timeout=90) for name, run_id in ids.items()}
    order = sorted(runs, key=lambda name: runs[name]["started_at"])
    assert order == ["high", "mid", "low"]


def test_after_trigger_runs_dependent_job(
    tmp_path: Path,
    namespace: str,
    demo_server: str,
) -> None:
    write_job(
        tmp_path / "configs",
        "upstream",
        f"name: upstream\nsource: {{url: '{demo_server}/orders.json'}}\n"
        "destination: {table: upstream, write: replace}\n",
    )
    write_job(
        tmp_path / "configs",
        "downstream",
        f"name: downstream\ntriggers: {{after: [upstream]}}\n"
        f"source: {{url: '{demo_server}/orders.json'}}\n"
        'transform: {sql: "SELECT status, count(*) AS n FROM records GROUP BY status"}\n'
        "destination: {table: downstream, write: replace}\n",
    )
    with running_system(tmp_path, namespace) as rt:
        first = wait_for_run(rt, ray.get(rt.scheduler.trigger.remote("upstream")))
        assert first["state"] == "succeeded"
        runs = poll_until(
            "downstream to be triggered",
            lambda: ray.get(rt.db.list_runs.remote(job="downstream")) or None,
            30,
            every=0.1,
        )
        assert runs[0]["trigger"] == "after:upstream"
        done = wait_for_run(rt, str(runs[0]["run_id"]))
        assert done["state"] == "succeeded" and done["rows_loaded"] == 3


def test_graceful_stop_requeues_a_run_that_outlives_the_grace_period(
    tmp_path: Path,
    namespace: str,
    slow_server: str,
) -> None:
    import duckdb

    from tg_actors import runtime

    write_job(
        tmp_path / "configs", "slow", SLOW_JOB.format(name="slow", priority=50, url=slow_server)
    )
    with running_system(tmp_path, namespace, engines=1) as rt:
        run_id = ray.get(rt.scheduler.trigger.remote("slow"))
        wait_state(rt, run_id, "running")
        db_path = ray.get(rt.db.path.remote())
        runtime.stop(rt, grace=0.5)  # the run needs ~4 s: it is cut
    with duckdb.connect(db_path, read_only=True) as con:
        state = con.execute("SELECT state FROM tg.runs WHERE run_id = ?", [run_id]).fetchone()
        assert state == ("queued",)  # truthful: it will run again at the next start
        assert con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'slow'"
        ).fetchone() == (0,)


OVERLAP_JOB = """
name: {name}
max_active_runs: 3
schedule: {{interval: 1s, overlap: {overlap}, catchup: none}}
source:
  url: {url}/items
  paginate: {{type: page}}
  max_pages: 3
destination: {{table: {name}, write: append}}
"""


def spans(runs: list[dict[str, object]]) -> list[tuple[float, float]]:
    return sorted(
        (r["started_at"].timestamp(), r["finished_at"].timestamp())  # type: ignore[attr-defined]
        for r in runs
        if r["state"] == "succeeded"
    )


@pytest.mark.parametrize("overlap", ["queue", "allow"])
def test_overlap_queue_waits_and_allow_runs_alongside(
    tmp_path: Path,
    namespace: str,
    overlap: str,
    slow_server: str,
) -> None:
    """Smoke check: the counts and the overlap of each policy are proven on a stepped clock
    (test_scheduler_ticks.py: queue keeps every tick one after another, allow runs alongside).
    Each run takes ~1.6 s (4 requests x 0.4 s) and ticks come every second."""
    name = f"overlap_{overlap}"
    write_job(
        tmp_path / "configs",
        name,
        OVERLAP_JOB.format(name=name, overlap=overlap, url=slow_server),
    )
    with running_system(tmp_path, namespace, engines=3) as rt:
        wait_runs(rt, name, "3 runs to succeed", lambda runs: len(spans(runs)) >= 3)
        pause(rt, name)
        runs = drained(rt, name)  # the queued backlog (queue) runs to its end too
    assert "skipped" not in {r["state"] for r in runs}  # neither policy skips a tick
    assert {r["state"] for r in runs} == {"succeeded"}  # drained: each tick ran, none lost
    done = spans(runs)
    assert len(done) >= 3
    overlapping = any(
        b_start < a_end for (_, a_end), (b_start, _) in zip(done, done[1:], strict=False)
    )
    assert overlapping is (overlap == "allow")


CATCHUP_JOB = """
name: ticks
max_active_runs: 20
schedule: {{interval: 1s, overlap: allow, catchup: all}}
source:
  url: {url}/orders
  params: {{per_page: 5}}
  records: "$.data"
  max_pages: 1
destination: {{table: ticks, write: append}}
"""


def test_scheduler_killed_mid_stream_neither_doubles_nor_loses_a_tick(
    tmp_path: Path,
    namespace: str,
    demo_server: str,
) -> None:
    """Smoke check: no gap and no double across a restart (the runs in flight, the ticks that
    fell while it was down, caught up) is proven on a stepped clock for several downtimes
    (test_scheduler_ticks.py); here the real actor is killed and Ray restarts it."""
    write_job(tmp_path / "configs", "ticks", CATCHUP_JOB.format(url=demo_server))
    with running_system(tmp_path, namespace) as rt:
        wait_runs(rt, "ticks", "3 runs to succeed", lambda runs: len(succeeded(runs)) >= 3)
        old_pid = pid_of(rt.scheduler)
        assert old_pid is not None
        killed_at = time.time()
        ray.kill(rt.scheduler, no_restart=False)  # restarts, reloads, catches up (all)
        restarted(rt.scheduler, old_pid)
        wait_ready(rt.scheduler)

        def after_the_restart(runs: list[dict[str, Any]]) -> bool:
            later = [r for r in succeeded(runs) if r["scheduled_for"].timestamp() > killed_at]
            return len(later) >= 4 and len(runs) >= 7

        wait_runs(rt, "ticks", "4 ticks after the kill to succeed", after_the_restart)
        pause(rt, "ticks")
        runs = drained(rt, "ticks")
    ticks = sorted(r["scheduled_for"].timestamp() for r in runs)
    assert len(ticks) >= 7
    assert ticks == [ticks[0] + i for i in range(len(ticks))]  # every second once, no gap
    assert {r["state"] for r in runs} == {"succeeded"}  # all ended (drained), none lost


def succeeded(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r["state"] == "succeeded"]
