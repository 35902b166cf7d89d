"""What the Scheduler fires, and when, on a stepped clock (tests/kit/stepped.py): once per tick
with no gap and no double, the overlap policies (skip, queue, allow under max_active_runs),
catch-up after a restart, pause and resume. The real Scheduler and DuckStore, no Ray, no
sleep: every instant below is exact, so the assertions are equalities, not windows.

The Ray integration tests (test_scheduler_actor.py, test_sync_end_to_end.py) prove the same
system end to end; these prove the counts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kit.stepped import SteppedSystem
from tg_actors.runstate import RunState

OPEN = {RunState.QUEUED, RunState.RUNNING, RunState.RETRYING}
GRACE_S = 5  # due_ticks: a tick at most this late is on time (`schedule`), older is `catchup`


def job(name: str, overlap: str, catchup: str = "none", max_active: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "max_active_runs": max_active,
        "schedule": {"interval": "1s", "overlap": overlap, "catchup": catchup},
        "source": {"url": "http://127.0.0.1:9/x"},
        "destination": {"table": name},
    }


def ticks(system: SteppedSystem, name: str) -> list[float]:
    return [system.seconds(r["scheduled_for"]) for r in system.runs(name)]


def spans(system: SteppedSystem, name: str) -> list[tuple[float, float]]:
    """(started, finished), seconds since T0, of the job's succeeded runs, by start."""
    return sorted(
        (system.seconds(r["started_at"]), system.seconds(r["finished_at"]))
        for r in system.runs(name)
        if r["state"] == RunState.SUCCEEDED
    )


def most_at_once(done: list[tuple[float, float]]) -> int:
    """The most runs running at one instant (a run ending at t frees its place at t)."""
    edges = sorted([(end, -1) for _, end in done] + [(start, 1) for start, _ in done])
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def nothing_open(system: SteppedSystem, name: str) -> bool:
    return not any(r["state"] in OPEN for r in system.runs(name))


async def test_an_interval_job_fires_once_per_tick_on_time_and_nothing_once_paused() -> None:
    system = SteppedSystem([job("ticker", "skip")], run_steps=2)  # a run: 0.5 s
    await system.start()
    await system.step(40)  # to t = 10 s: ticks 1..10 fired
    await system.set_paused("ticker", True)
    await system.until("the last run to end", lambda: nothing_open(system, "ticker"), 8)
    await system.step(20)  # 5 s more: a paused job fires nothing
    runs = system.runs("ticker")
    assert ticks(system, "ticker") == [float(t) for t in range(1, 11)]  # no gap, no double
    assert {r["trigger"] for r in runs} == {"schedule"}
    assert {r["state"] for r in runs} == {RunState.SUCCEEDED}
    # each run starts on its tick (no lateness) and ends 0.5 s later, before the next tick
    assert spans(system, "ticker") == [(t, t + 0.5) for t in range(1, 11)]


async def test_overlap_skip_records_a_tick_that_falls_during_a_run_as_skipped() -> None:
    system = SteppedSystem([job("skipper", "skip")], run_steps=6)  # a run: 1.5 s
    await system.start()
    await system.step(40)
    await system.set_paused("skipper", True)
    await system.until("the last run to end", lambda: nothing_open(system, "skipper"), 8)
    runs = system.runs("skipper")
    assert ticks(system, "skipper") == [float(t) for t in range(1, 11)]  # every tick has a row
    # tick 1 runs [1, 2.5]: tick 2 falls inside it and is skipped, tick 3 runs, and so on
    assert [r["state"] for r in runs] == [RunState.SUCCEEDED, RunState.SKIPPED] * 5
    assert spans(system, "skipper") == [(t, t + 1.5) for t in range(1, 11, 2)]


async def test_overlap_queue_keeps_every_tick_and_runs_them_one_after_another() -> None:
    system = SteppedSystem([job("queued", "queue", max_active=3)], run_steps=7)  # 1.75 s
    await system.start()
    await system.step(40)  # ticks come every second, runs take 1.75 s: a backlog builds
    await system.set_paused("queued", True)
    # a pause stops new ticks; the ticks already queued still run
    await system.until("the backlog to drain", lambda: nothing_open(system, "queued"), 200)
    runs = system.runs("queued")
    assert ticks(system, "queued") == [float(t) for t in range(1, 11)]
    assert {r["state"] for r in runs} == {RunState.SUCCEEDED}  # none skipped, none lost
    done = spans(system, "queued")
    assert most_at_once(done) == 1  # never two at once, although max_active_runs is 3
    # in tick order, each starting once the one before has ended (one turn later)
    starts = [system.seconds(r["started_at"]) for r in runs]
    assert starts == sorted(starts)
    for (_, end), (start, _) in zip(done, done[1:], strict=False):
        assert start == end + system.dt


async def test_overlap_allow_starts_each_tick_on_time_alongside_the_one_before() -> None:
    system = SteppedSystem([job("allowed", "allow", max_active=3)], run_steps=7)  # 1.75 s
    await system.start()
    await system.step(40)
    await system.set_paused("allowed", True)
    await system.until("the last runs to end", lambda: nothing_open(system, "allowed"), 8)
    assert ticks(system, "allowed") == [float(t) for t in range(1, 11)]
    assert {r["state"] for r in system.runs("allowed")} == {RunState.SUCCEEDED}
    done = spans(system, "allowed")
    assert done == [(t, t + 1.75) for t in range(1, 11)]  # on its tick, whatever is running
    assert most_at_once(done) == 2


async def test_overlap_allow_waits_at_max_active_runs_and_still_runs_every_tick() -> None:
    system = SteppedSystem([job("capped", "allow", max_active=2)], run_steps=14)  # 3.5 s
    await system.start()
    await system.step(40)
    await system.set_paused("capped", True)
    await system.until("the backlog to drain", lambda: nothing_open(system, "capped"), 200)
    assert ticks(system, "capped") == [float(t) for t in range(1, 11)]
    assert {r["state"] for r in system.runs("capped")} == {RunState.SUCCEEDED}
    done = spans(system, "capped")
    assert most_at_once(done) == 2  # uncapped, four would run at once
    assert done[2][0] > 3  # tick 3 waited for a place


@pytest.mark.parametrize("down_s", [0, 2, 8])
async def test_a_restarted_scheduler_neither_doubles_nor_loses_a_tick(down_s: int) -> None:
    ticker = job("ticks", "allow", "all", max_active=20)
    system = SteppedSystem([ticker], run_steps=8, slots=20)  # a run: 2 s
    await system.start()
    await system.step(14)  # t = 3.5: the runs of ticks 2 and 3 are running
    assert [r["state"] for r in system.runs("ticks")] == [RunState.SUCCEEDED] + [
        RunState.RUNNING
    ] * 2
    system.crash()
    await system.step(4 * down_s)  # down: engines work on, nobody fires a tick
    restarted_at = 3.5 + down_s
    await system.start()  # reloads jobs and open runs from DuckDB, catches up (all)
    await system.step(4 * (15 - int(restarted_at)))  # on until t = 15.5
    await system.set_paused("ticks", True)
    await system.until("the last runs to end", lambda: nothing_open(system, "ticks"), 12)
    runs = system.runs("ticks")
    assert ticks(system, "ticks") == [float(t) for t in range(1, 16)]  # no gap, no double
    assert {r["state"] for r in runs} == {RunState.SUCCEEDED}
    assert {r["attempt"] for r in runs} == {1}  # the runs in flight at the crash were not redone
    # a tick that fell while it was down runs once it is back: late beyond the grace, as
    # `catchup`; else on time, as `schedule`
    late = [t for t in range(4, 16) if t < restarted_at - GRACE_S]
    assert [r["trigger"] for r in runs] == [
        "catchup" if t in late else "schedule" for t in range(1, 16)
    ]
    assert all(s < 3.5 or s >= restarted_at for s, _ in spans(system, "ticks"))  # none while down


@pytest.mark.parametrize("catchup", ["none", "all"])
async def test_a_pause_fires_nothing_and_a_resume_does_not_replay_the_pause(
    catchup: str,
) -> None:
    system = SteppedSystem([job("pausable", "allow", catchup, max_active=5)], run_steps=2)
    await system.start()
    await system.step(14)  # t = 3.5: ticks 1..3
    await system.set_paused("pausable", True)
    await system.step(26)  # t = 10: paused through ticks 4..10
    assert ticks(system, "pausable") == [1.0, 2.0, 3.0]
    await system.set_paused("pausable", False)
    await system.step(20)  # t = 15
    # from the resume on, every tick once; the paused window is not replayed, even by catchup
    assert ticks(system, "pausable") == [1.0, 2.0, 3.0, *(float(t) for t in range(11, 16))]
