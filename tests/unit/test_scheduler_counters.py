"""The Scheduler's metric counters (scheduler/counters.py) against the truth in tg.runs, on a
stepped clock (tests/kit/stepped.py: the real Scheduler and DuckStore, no Ray): runs that
succeed, ticks skipped by `overlap: skip`, a cancelled queued run, and a Scheduler crash in
the middle (events of runs that ended meanwhile wait for the new one) are each counted once."""

from __future__ import annotations

from typing import Any

from tests.kit.stepped import SteppedSystem
from tg_actors.messages import TOPIC_STATUS
from tg_actors.metrics import DURATION_BUCKETS
from tg_actors.runstate import TERMINAL, RunState
from tg_actors.scheduler.actor import GROUP


def job(name: str, overlap: str, max_active: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "max_active_runs": max_active,
        "schedule": {"interval": "1s", "overlap": overlap},
        "source": {"url": "http://127.0.0.1:9/x"},
        "destination": {"table": name},
    }


def ended(system: SteppedSystem, *jobs: str) -> bool:
    return all(RunState(r["state"]) in TERMINAL for j in jobs for r in system.runs(j))


async def test_the_counters_agree_with_tg_runs_across_a_crash_and_restart() -> None:
    system = SteppedSystem([job("skipper", "skip"), job("backlog", "queue", 3)], run_steps=7)
    await system.start()
    await system.step(20)  # runs take 1.75 s, ticks come every second: a backlog waits
    system.crash()  # engines work on; their events wait for the next Scheduler
    await system.step(8)
    await system.start()  # seeded from tg.runs, open runs tracked again
    await system.step(4)
    waiting = [r for r in system.runs("backlog") if r["state"] == RunState.QUEUED]
    assert waiting, system.runs("backlog")
    assert system.scheduler is not None
    await system.scheduler.cancel(waiting[-1]["run_id"])  # counted by this Scheduler
    await system.step(8)
    for name in ("skipper", "backlog"):
        await system.set_paused(name, True)
    await system.until("every run to end", lambda: ended(system, "skipper", "backlog"), 400)
    await system.step(2)  # the last events handled
    snap = await system.scheduler.metrics()
    truth = system.store.run_totals(DURATION_BUCKETS)
    assert snap["counters"]["finished"] == [[t["job"], t["state"], t["runs"]] for t in truth]
    states = {state for _, state, _ in snap["counters"]["finished"]}
    assert {"succeeded", "skipped", "cancelled"} <= states
    assert snap["active"] == {"queued": 0, "running": 0, "retrying": 0}


async def test_a_run_whose_end_was_lost_is_counted_when_the_scheduler_reconciles() -> None:
    """The engines' RunFinished never reach the Scheduler (lost with a restarted broker):
    the runs ended in DuckDB are found by the next reconcile, and counted there once."""
    system = SteppedSystem([job("lossy", "skip")], run_steps=2)
    await system.start()
    await system.until("a run to succeed", lambda: _succeeded(system, "lossy") >= 1, 40)
    await system.set_paused("lossy", True)
    for _ in range(6):  # the remaining run ends; its events are consumed and dropped
        system.clock.advance(system.dt)
        assert system.scheduler is not None
        await system.scheduler.tick_once()
        for engine in system.engines:
            await engine.turn()
        await system.broker.consume(TOPIC_STATUS, GROUP, 1000, 0)
    assert ended(system, "lossy")
    await system.step(int(6 / system.dt))  # past the reconcile interval (5 s)
    assert system.scheduler is not None
    snap = await system.scheduler.metrics()
    truth = system.store.run_totals(DURATION_BUCKETS)
    assert snap["counters"]["finished"] == [[t["job"], t["state"], t["runs"]] for t in truth]
    assert snap["active"] == {"queued": 0, "running": 0, "retrying": 0}


def _succeeded(system: SteppedSystem, name: str) -> int:
    return sum(r["state"] == RunState.SUCCEEDED for r in system.runs(name))
