"""The store's side of the run-lifecycle protocol (issue 12): each case failed on the code
before it, as the simulation in tests/sim found it; here it is pinned down on its own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.kit.stepclock import T0, Clock
from tg_actors.attempts import Commit
from tg_actors.errors import IllegalTransition, StaleAttempt
from tg_actors.jobs import Schedule
from tg_actors.scheduler.schedule import SCHEDULE, due_ticks
from tg_actors.store.duckdb import DuckStore

SPEC = {"name": "orders", "schedule": {"interval": "1m", "catchup": "all"}}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckStore]:
    s = DuckStore(tmp_path / "data" / "protocol.duckdb", clock=Clock())
    yield s
    s.close()


def test_a_retried_insert_recognises_its_own_run(store: DuckStore) -> None:
    """#6: run ids minted by the Scheduler, so an insert whose answer was lost, tried again,
    returns its run instead of losing the tick; another run on that tick is still refused."""
    tick = {"job": "orders", "scheduled_for": T0, "trigger": "schedule", "priority": 50}
    assert store.create_runs([tick | {"run_id": "r1"}]) == ["r1"]
    assert store.create_runs([tick | {"run_id": "r1"}]) == ["r1"]
    assert store.create_runs([tick | {"run_id": "r2"}]) == [None]
    assert store.query("SELECT count(*) FROM tg.runs")[0][0] == 1


def test_updates_are_fenced_by_attempt_and_follow_the_table(store: DuckStore) -> None:
    """#2, #11: a write of a superseded attempt is refused (StaleAttempt), and so is a move
    the transition table does not have."""
    run_id = store.create_run("orders", T0, "schedule")
    assert run_id is not None
    store.update_run(run_id, expect_state="queued", expect_attempt=1, attempt=2)
    with pytest.raises(StaleAttempt):
        store.update_run(run_id, expect_state="queued", expect_attempt=1, state="running")
    with pytest.raises(IllegalTransition):
        store.update_run(run_id, expect_state="queued", expect_attempt=2, state="succeeded")
    assert store.get_run(run_id)["state"] == "queued"  # type: ignore[index]


def test_a_resume_moves_the_watermark_past_the_paused_window(tmp_path: Path) -> None:
    """#5: after a resume, catch-up counts from the resume, also for a restarted Scheduler."""
    now = [T0]
    store = DuckStore(tmp_path / "w.duckdb", clock=lambda: now[0])
    store.upsert_job("orders", SPEC, "api")
    last = T0 + timedelta(minutes=1)
    store.create_run("orders", last, "schedule")
    store.set_paused("orders", True)
    assert store.watermark("orders") == last  # the last tick run, later than the creation
    now[0] = resumed = T0 + timedelta(hours=6)  # paused for six hours
    store.set_paused("orders", False)
    assert store.watermark("orders") == resumed
    # an edit that leaves the schedule alone does not move it; a new schedule does
    now[0] = T0 + timedelta(hours=7)
    store.upsert_job("orders", SPEC | {"description": "x"}, "api")
    assert store.watermark("orders") == resumed
    store.upsert_job("orders", SPEC | {"schedule": {"interval": "5m"}}, "api")
    assert store.watermark("orders") == now[0]
    store.close()


def test_watermarks_of_many_jobs_in_one_query_equal_each_ones(tmp_path: Path) -> None:
    """A Scheduler's boot reads every job's watermark at once: the same values as one by one."""
    now = [T0]
    store = DuckStore(tmp_path / "w.duckdb", clock=lambda: now[0])
    for name in ("ticked", "manual_only", "resumed", "fresh"):
        store.upsert_job(name, SPEC | {"name": name}, "api")
    store.create_run("ticked", T0 + timedelta(minutes=3), "schedule")
    store.create_run("ticked", T0 + timedelta(minutes=2), "catchup")
    store.create_run("manual_only", T0 + timedelta(hours=1), "manual")  # not a tick
    store.create_run("resumed", T0 + timedelta(minutes=1), "schedule")
    now[0] = T0 + timedelta(hours=2)
    store.set_paused("resumed", True)
    store.set_paused("resumed", False)  # schedule_from, later than its last tick
    names = ["ticked", "manual_only", "resumed", "fresh", "unknown"]
    marks = store.watermarks(names)
    assert marks == {
        "ticked": T0 + timedelta(minutes=3),
        "manual_only": T0,
        "resumed": T0 + timedelta(hours=2),
        "fresh": T0,
    }
    assert {name: store.watermark(name) for name in names} == {**marks, "unknown": None}
    assert store.watermarks([]) == {}
    store.close()


def test_each_upstream_success_is_missing_its_dependent_until_created(store: DuckStore) -> None:
    """#8: dependents come from DuckDB, not from the RunFinished message alone."""
    store.upsert_job("b", {"name": "b", "triggers": {"after": ["a"]}}, "api")
    run_id = store.create_run("a", T0 + timedelta(hours=1), "schedule", state="running")
    assert run_id is not None and store.missing_dependents([("b", "a", 0)]) == []
    store.commit_run(Commit(run_id, table="t", write="append", pages=0))
    (missing,) = store.missing_dependents([("b", "a", 0)])
    finished = store.get_run(run_id)["finished_at"]  # type: ignore[index]
    assert missing == ("b", "a", finished)
    store.create_runs([{"job": "b", "scheduled_for": finished, "trigger": "after:a"}])
    assert store.missing_dependents([("b", "a", 0)]) == []


def test_a_tick_handled_late_while_up_is_on_time() -> None:
    """#7: a tick that fell while the Scheduler was up is not a missed one, however late the
    loop gets to it; `catchup: none` drops only ticks from before the Scheduler came up."""
    schedule = Schedule(interval=timedelta(minutes=1), catchup="none")  # type: ignore[arg-type]
    tick = T0 + timedelta(minutes=1)
    late = tick + timedelta(seconds=30)
    assert due_ticks(schedule, T0, late).ticks == []  # as before: seen as missed while down
    due = due_ticks(schedule, T0, late, up_since=T0 + timedelta(seconds=10))
    assert due.ticks == [(tick, SCHEDULE)]


def test_the_metrics_reads_leave_the_connection_free(tmp_path: Path) -> None:
    """rows_loaded_total and loaded_since read their whole result: the next statement on the
    one connection runs (a half-read result would make it raise ResourceInUse)."""
    store = DuckStore(tmp_path / "m.duckdb")
    try:
        assert store.rows_loaded_total() == 0
        assert store.loaded_since(7) == []
        assert store.rows_loaded_total() == 0  # then an Arrow registration, as create_runs does
        when = datetime(2026, 1, 1, tzinfo=UTC)
        new = {"job": "j", "scheduled_for": when, "trigger": "manual", "state": "queued"}
        assert store.create_runs([new | {"priority": 50}])[0] is not None
        assert store.loaded_since(7) == []
    finally:
        store.close()
