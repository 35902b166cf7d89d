from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tg_actors.scheduler.taskqueue import QueuedRun, TaskQueue

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def drain(queue: TaskQueue, now: datetime) -> list[str]:
    out = []
    while (run := queue.pop_ready(now)) is not None:
        out.append(run.run_id)
    return out


def test_order_priority_then_due_then_fifo() -> None:
    q = TaskQueue()
    q.push("low", "a", 10, at(0))
    q.push("high-late", "a", 90, at(5))
    q.push("high-early", "b", 90, at(1))
    q.push("mid-1", "c", 50, at(2))
    q.push("mid-2", "c", 50, at(2))
    expected = ["high-early", "high-late", "mid-1", "mid-2", "low"]
    assert [r.run_id for r in q.items()] == expected
    assert drain(q, at(10)) == expected
    assert len(q) == 0


def test_push_returns_the_run_and_duplicate_is_ignored() -> None:
    q = TaskQueue()
    first = q.push("r1", "a", 50, at(0))
    assert first == QueuedRun("r1", "a", 50, at(0), first.seq)
    again = q.push("r1", "other", 99, at(-5))
    assert again is first
    assert len(q) == 1 and q.count("a") == 1 and q.count("other") == 0


def test_pop_ready_skips_not_yet_due_and_keeps_its_place() -> None:
    q = TaskQueue()
    q.push("future", "a", 100, at(60))
    q.push("now", "b", 1, at(0))
    popped = q.pop_ready(at(1))
    assert popped is not None and popped.run_id == "now"
    assert q.pop_ready(at(1)) is None  # only a future run is left
    assert [r.run_id for r in q.items()] == ["future"]
    popped = q.pop_ready(at(60))
    assert popped is not None and popped.run_id == "future"


def test_pop_ready_respects_can_run_and_keeps_skipped_in_place() -> None:
    q = TaskQueue()
    for i, job in enumerate(["busy", "busy", "free", "busy", "free"]):
        q.push(f"r{i}", job, 50, at(i))
    got = q.pop_ready(at(100), lambda r: r.job != "busy")
    assert got is not None and got.run_id == "r2"
    assert [r.run_id for r in q.items()] == ["r0", "r1", "r3", "r4"]
    assert q.pop_ready(at(100), lambda r: False) is None
    assert len(q) == 4
    assert drain(q, at(100)) == ["r0", "r1", "r3", "r4"]


def test_remove_contains_count() -> None:
    q = TaskQueue()
    q.push("r1", "a", 50, at(0))
    q.push("r2", "a", 50, at(1))
    q.push("r3", "b", 50, at(2))
    assert "r1" in q and "nope" not in q
    assert q.count("a") == 2 and q.count("b") == 1 and q.count("zzz") == 0
    assert q.remove("r1") is True
    assert q.remove("r1") is False
    assert q.remove("never") is False
    assert "r1" not in q and len(q) == 2 and q.count("a") == 1
    assert drain(q, at(10)) == ["r2", "r3"]
    assert q.count("a") == 0 and q.count("b") == 0


def test_removed_then_pushed_again_is_a_new_entry() -> None:
    q = TaskQueue()
    q.push("r1", "a", 90, at(0))
    q.push("r2", "a", 50, at(0))
    q.remove("r1")
    q.push("r1", "a", 10, at(0))  # re-queued at a lower priority: the old entry must not win
    assert drain(q, at(0)) == ["r2", "r1"]


def test_many_removals_compact_the_heap() -> None:
    q = TaskQueue()
    for i in range(1000):
        q.push(f"r{i}", "a", i % 7, at(i))
    for i in range(0, 1000, 2):
        assert q.remove(f"r{i}")
    assert len(q) == 500
    assert len(q._heap) <= 2 * len(q) + 16
    assert [r.run_id for r in q.items()] == drain(q, at(2000))


runs = st.lists(
    st.tuples(st.integers(0, 100), st.integers(0, 50), st.sampled_from("abc")),
    max_size=60,
)


@given(runs=runs, removals=st.sets(st.integers(0, 59)))
def test_draining_yields_sorted_order(runs: list[tuple[int, int, str]], removals: set[int]) -> None:
    q = TaskQueue()
    pushed = [q.push(f"r{i}", job, prio, at(due)) for i, (prio, due, job) in enumerate(runs)]
    for i in removals:
        q.remove(f"r{i}")
    kept = [r for r in pushed if int(r.run_id[1:]) not in removals]
    expected = sorted(kept, key=lambda r: (-r.priority, r.due, r.seq))
    assert q.items() == expected
    assert [q.pop_ready(at(50)) for _ in kept] == expected
    assert q.pop_ready(at(50)) is None and len(q) == 0


@given(runs=runs, now=st.integers(0, 50))
def test_pop_ready_returns_first_due_in_order(runs: list[tuple[int, int, str]], now: int) -> None:
    q = TaskQueue()
    for i, (prio, due, job) in enumerate(runs):
        q.push(f"r{i}", job, prio, at(due))
    order = q.items()
    ready = [r for r in order if r.due <= at(now) and r.job != "b"]
    got = q.pop_ready(at(now), lambda r: r.job != "b")
    assert got == (ready[0] if ready else None)
    assert q.items() == [r for r in order if r != got]


def test_aging_lets_a_starved_low_priority_run_overtake() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    queue = TaskQueue()
    queue.push("low", "j", 10, t0)
    # high-priority runs keep arriving; without aging "low" would never be chosen
    for minute in range(1, 6):
        now = t0 + timedelta(minutes=minute)
        queue.push(f"high{minute}", "j", 60, now)
        queue.age(now, every=timedelta(seconds=5))
        first = queue.pop_ready(now)
        assert first is not None
        if first.run_id == "low":
            assert first.priority >= 60
            assert first.base == 10
            break
    else:
        raise AssertionError("the low-priority run starved")


def test_aging_is_capped_and_leaves_not_yet_due_runs_alone() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    queue = TaskQueue()
    queue.push("old", "j", 95, t0)
    queue.push("future", "j", 5, t0 + timedelta(hours=1))
    assert queue.age(t0 + timedelta(minutes=10), every=timedelta(seconds=1)) == 1
    assert [(r.run_id, r.priority) for r in queue.items()] == [("old", 100), ("future", 5)]
