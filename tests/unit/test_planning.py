from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from tg_actors.jobs import parse_job
from tg_actors.scheduler.planning import (
    FireTimes,
    JobEntry,
    dependency_edges,
    dependents_of,
    due_runs,
    group_triggers,
    off_schedule,
    plan_runs,
    start_at,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(name: str, overlap: str = "skip", **extra: Any) -> JobEntry:
    spec = parse_job(
        {
            "name": name,
            "schedule": {"interval": "1s", "overlap": overlap, **extra},
            "source": {"url": "http://127.0.0.1:9/x"},
            "destination": {"table": name},
        }
    )
    return JobEntry(spec, spec.to_stored(), paused=False, watermark=T0)


def test_overlap_skip_records_later_ticks_of_an_active_job_as_skipped() -> None:
    a, b, q = entry("a"), entry("b"), entry("q", overlap="queue")
    batch = [(a, T0, "catchup"), (a, T0 + timedelta(seconds=1), "schedule"), (b, T0, "schedule")]
    batch += [(q, T0, "schedule"), (q, T0 + timedelta(seconds=1), "schedule")]
    plans = plan_runs(batch, is_active=lambda job: job == "b")
    assert [(p.job, p.skip) for p in plans] == [
        ("a", False), ("a", True), ("b", True), ("q", False), ("q", False)
    ]  # fmt: skip
    assert all(p.priority == 50 for p in plans)
    manual = plan_runs([(b, T0, "manual")], lambda job: True, priority=90, check_overlap=False)
    assert (manual[0].skip, manual[0].priority) == (False, 90)


def test_jitter_delays_only_scheduled_ticks_and_within_bounds() -> None:
    jittery, rng = entry("j", jitter="10s"), random.Random(7)
    starts = [start_at(jittery, T0, "schedule", rng) for _ in range(200)]
    assert all(T0 <= s <= T0 + timedelta(seconds=10) for s in starts) and len(set(starts)) > 1
    assert start_at(jittery, T0, "manual", rng) == T0
    assert start_at(entry("n"), T0, "schedule", rng) == T0


def test_next_run_at() -> None:
    job = entry("a")
    assert job.next_run_at(T0 + timedelta(milliseconds=500)) == T0 + timedelta(seconds=1)
    job.paused = True
    assert job.next_run_at(T0) is None


def test_fire_times_pop_due_in_order_once_and_superseded_entries_drop() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    fires = FireTimes()
    fires.set("a", t0 + timedelta(seconds=3))
    fires.set("b", t0 + timedelta(seconds=1))
    fires.set("c", t0 + timedelta(seconds=2))
    fires.set("a", t0 + timedelta(seconds=0.5))  # supersedes a@3
    fires.set("c", None)  # c no longer scheduled
    assert fires.earliest() == t0 + timedelta(seconds=0.5)
    assert fires.pop_due(t0 + timedelta(seconds=1)) == ["a", "b"]
    assert fires.pop_due(t0 + timedelta(seconds=10)) == []  # a@3 and c@2 were stale
    assert fires.earliest() is None and len(fires) == 0


def test_fire_times_heap_stays_bounded_under_many_updates() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    fires = FireTimes()
    for i in range(10_000):
        fires.set(f"job{i % 10}", t0 + timedelta(seconds=i))
    assert len(fires._heap) <= 2 * 10 + 64 + 1
    assert sorted(fires.pop_due(t0 + timedelta(days=1))) == [f"job{i}" for i in range(10)]


def test_manual_triggers_get_distinct_instants_off_the_schedule_grouped_by_priority() -> None:
    a, b = entry("a"), entry("b")
    off = T0 + timedelta(milliseconds=500)
    items = [("a", None, "manual"), ("gone", None, "manual"), ("a", 90, "api"), ("b", None, "x")]
    groups = group_triggers(items, {"a": a, "b": b}, off)
    us = timedelta(microseconds=1)
    assert groups == {
        None: [(0, (a, off, "manual")), (3, (b, off, "x"))],
        90: [(2, (a, off + us, "api"))],
    }
    # on a tick (T0 + 1s): a microsecond later, so the tick keeps its (job, scheduled_for)
    assert off_schedule(a, T0 + timedelta(seconds=1)) == T0 + timedelta(seconds=1) + us
    assert off_schedule(a, off) == off


def test_may_start_by_overlap_and_max_active_runs() -> None:
    rows = [  # (overlap, max_active_runs, running, may start)
        ("queue", 3, 0, True), ("queue", 3, 1, False),
        ("allow", 2, 1, True), ("allow", 2, 2, False), ("skip", 1, 1, False),
    ]  # fmt: skip
    for overlap, most, running, expected in rows:
        job = entry("j", overlap=overlap)
        job.spec = job.spec.model_copy(update={"max_active_runs": most})
        assert job.may_start(running) is expected, (overlap, most, running)


def test_an_edit_keeps_the_watermark_unless_the_schedule_changes_or_the_job_resumes() -> None:
    now = T0 + timedelta(hours=1)
    job = entry("a")
    assert job.edited_watermark({**job.stored, "priority": 7}, False, now) == T0
    other = {**job.stored, "schedule": {**job.stored["schedule"], "interval": "2s"}}
    assert job.edited_watermark(other, False, now) == now
    job.paused = True
    assert job.edited_watermark(job.stored, True, now) == T0  # still paused
    assert job.edited_watermark(job.stored, False, now) == now  # resumed


def test_due_runs_leaves_out_gone_and_paused_jobs() -> None:
    a, p = entry("a"), entry("p")
    p.paused = True
    now = T0 + timedelta(seconds=2)
    due = due_runs(["a", "p", "gone"], {"a": a, "p": p}, now, up_since=T0)
    assert [(e.spec.name, tick) for e, tick, _ in due.runs] == [
        ("a", T0 + timedelta(seconds=1)), ("a", T0 + timedelta(seconds=2))
    ]  # fmt: skip
    assert [e.spec.name for e, _ in due.fired] == ["a"] and due.cut == []


def test_dependents_and_edges_of_triggers_after() -> None:
    def after(name: str, *upstream: str, paused: bool = False) -> JobEntry:
        spec = parse_job(
            {
                "name": name,
                "triggers": {"after": list(upstream)},
                "source": {"url": "http://127.0.0.1:9/x"},
                "destination": {"table": name},
            }
        )
        return JobEntry(spec, spec.to_stored(), paused=paused, watermark=T0)

    jobs = [after("up"), after("d1", "up"), after("d2", "x", "up"), after("d3", "up", paused=True)]
    assert dependents_of(jobs) == {"up": ["d1", "d2", "d3"], "x": ["d2"]}
    assert dependency_edges(jobs) == [("d1", "up", 0), ("d2", "x", 0), ("d2", "up", 1)]
    assert dependency_edges(jobs, "x") == [("d2", "x", 0)]
