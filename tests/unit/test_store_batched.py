"""DuckStore's batched paths: begin_attempts, commit_run(Commit(batch=...)) and commit_runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.kit.stepclock import T0, Clock
from tg_actors.attempts import Begin, Begun, Commit, Resume
from tg_actors.errors import DestinationError, IllegalTransition, RunNotFound, StaleAttempt
from tg_actors.store.duckdb import DuckStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckStore]:
    s = DuckStore(tmp_path / "data" / "batched.duckdb", clock=Clock())
    yield s
    s.close()


_offsets = iter(range(1_000_000))


def new_run(store: DuckStore, job: str = "orders", **kw: Any) -> str:
    run_id = store.create_run(job, T0 + timedelta(minutes=next(_offsets)), "schedule", **kw)
    assert run_id is not None
    return run_id


def table_rows(store: DuckStore, table: str, order: str = "rowid") -> list[tuple[Any, ...]]:
    return store.query(f"SELECT * FROM main.{table} ORDER BY {order}")


def has_table(store: DuckStore, table: str) -> bool:
    return any(t["name"] == table for t in store.list_tables())


def ids(*values: int) -> pa.Table:
    return pa.table({"id": pa.array(values, pa.int64())})


def commit_item(run_id: str, batch: pa.Table, **kw: Any) -> Commit:
    fields: dict[str, Any] = {"table": "t", "write": "append", "pages": 1}
    return Commit(run_id, **(fields | {"batch": batch} | kw))


def committed_cursor(store: DuckStore, job: str, value: str) -> None:
    run_id = new_run(store, job, state="running")
    store.commit_run(Commit(run_id, table="seed", write="append", pages=0, cursor=(job, value)))


# -- begin_attempts ----------------------------------------------------------------------


def test_begin_starts_a_running_run_only_for_the_engine_that_began_it(store: DuckStore) -> None:
    """Two engines never hold one attempt (issue 12 #2): a duplicate TriggerRun, or a
    re-dispatch under the same attempt, is refused to a second engine; the first engine's
    own begin, repeated after a lost answer, goes through."""
    run_id = new_run(store)
    item = Begin(run_id, job="orders", attempt=1, incremental=False)
    first = store.begin_attempts([item], "engine-1")[0]
    assert isinstance(first, Begun)
    again = store.begin_attempts([item], "engine-1")[0]
    assert isinstance(again, Begun)
    other = store.begin_attempts([item], "engine-2")[0]
    assert isinstance(other, IllegalTransition) and other.current == "running"
    store.update_run(run_id, expect_state="running", state="queued", attempt=2)
    stale = store.begin_attempts([item], "engine-1")[0]
    assert isinstance(stale, StaleAttempt)


def test_begin_attempts_starts_runs_and_returns_resume_and_cursor(store: DuckStore) -> None:
    committed_cursor(store, "orders", "2026-02-01")
    fresh = new_run(store)  # queued, leftover staging without checkpoint
    store.stage_batch(fresh, ids(1, 2))
    resumed = new_run(store)  # re-queued after a failed attempt, with a checkpoint: resumes
    store.stage_batch(resumed, ids(3), checkpoint={"page": 2}, pages=2)
    plain = new_run(store, "other")
    before = store.checkpoint(resumed)
    items = [
        Begin(fresh, job="orders", attempt=1, incremental=True),
        Begin(resumed, job="orders", attempt=None, incremental=False),
        Begin(plain, job="other", attempt=1, incremental=True),
    ]

    results = store.begin_attempts(items, "engine-7")

    started = results[0]
    assert isinstance(started, Begun)
    now = started.started_at
    assert results == [
        Begun(resume=None, cursor="2026-02-01", started_at=now, trigger="schedule"),
        Begun(
            resume=Resume({"page": 2}, pages=2, rows=1),
            cursor=None,
            started_at=now,
            trigger="schedule",
        ),
        Begun(resume=None, cursor=None, started_at=now, trigger="schedule"),
    ]
    assert before is not None and Resume(**before) == results[1].resume  # type: ignore[union-attr]
    for run_id in (fresh, resumed, plain):
        run = store.get_run(run_id)
        assert run is not None
        assert (run["state"], run["started_at"], run["engine"]) == ("running", now, "engine-7")
    assert store.staged_run_ids() == [resumed]  # the fresh run's leftover staging is gone
    assert store.staged_rows(resumed) == 1


def test_begin_attempts_errors_stay_per_item(store: DuckStore) -> None:
    good = new_run(store)
    cancelled = new_run(store)
    assert store.cancel_run(cancelled)
    stale = new_run(store, attempt=3)
    store.stage_batch(stale, ids(1))  # the live attempt's staging: must survive
    done = new_run(store, state="succeeded")
    retrying = new_run(store, state="retrying")
    later = new_run(store)

    def item(run_id: str, attempt: int | None = 1) -> Begin:
        return Begin(run_id, job="orders", attempt=attempt, incremental=False)

    results = store.begin_attempts(
        [
            item(good),
            item("no-such-run"),
            item(cancelled),
            item(stale, 2),
            item(done),
            item(retrying),
            item(later, None),
        ],
        "e",
    )

    assert isinstance(results[1], RunNotFound) and results[1].run_id == "no-such-run"
    assert isinstance(results[2], IllegalTransition)
    assert (results[2].current, results[2].target) == ("cancelled", "running")
    assert isinstance(results[3], StaleAttempt)
    assert (results[3].attempt, results[3].current) == (2, 3)
    assert isinstance(results[4], IllegalTransition) and results[4].current == "succeeded"
    assert isinstance(results[5], IllegalTransition) and results[5].current == "retrying"
    for i in (0, 6):
        assert isinstance(results[i], Begun) and results[i].resume is None  # type: ignore[union-attr]
    states = {r: store.get_run(r)["state"] for r in (good, cancelled, stale, done, retrying, later)}  # type: ignore[index]
    assert states == {
        good: "running",
        cancelled: "cancelled",
        stale: "queued",
        done: "succeeded",
        retrying: "retrying",
        later: "running",
    }
    assert store.staged_run_ids() == [stale]
    assert store.get_run(stale)["started_at"] is None  # type: ignore[index]
    assert store.begin_attempts([], "e") == []


def test_begin_attempts_many_runs(store: DuckStore) -> None:
    run_ids = [new_run(store) for _ in range(120)]
    items = [Begin(r, job="orders", attempt=1, incremental=False) for r in run_ids]
    results = store.begin_attempts(items, "e")
    assert all(isinstance(r, Begun) for r in results)
    assert store.run_counts()["running"] == 120


# -- commit_run(batch=...) ---------------------------------------------------------------


def test_commit_run_batch_append_without_staging(store: DuckStore) -> None:
    run_id = new_run(store, state="running")
    batch = pa.table({"id": [1, 2, 3], "name": ["a", "b", None], "empty": [None] * 3})

    rows = store.commit_run(
        Commit(run_id, table="t", write="append", pages=4, batch=batch, cursor=("orders", "7"))
    )

    assert rows == 3
    assert table_rows(store, "t") == [(1, "a"), (2, "b"), (3, None)]  # all-null column dropped
    run = store.get_run(run_id)
    assert run is not None and (run["state"], run["rows_loaded"], run["pages"]) == (
        "succeeded",
        3,
        4,
    )
    assert store.cursor("orders") == "7"
    assert store.staged_run_ids() == []
    # idempotent: a retried commit changes nothing and returns the first result
    assert store.commit_run(Commit(run_id, table="t", write="append", pages=4, batch=batch)) == 3
    assert len(table_rows(store, "t")) == 3


def test_commit_run_batch_evolves_target(store: DuckStore) -> None:
    first = new_run(store, state="running")
    store.commit_run(Commit(first, table="t", write="append", pages=1, batch=ids(1)))
    second = new_run(store, state="running")
    batch = pa.table({"id": [2.5], "extra": ["x"]})  # BIGINT -> DOUBLE, and a new column

    assert store.commit_run(Commit(second, table="t", write="append", pages=1, batch=batch)) == 1

    assert table_rows(store, "t") == [(1.0, None), (2.5, "x")]
    types = {c["name"]: c["type"] for c in store.list_tables()[0]["columns"]}
    assert types == {"id": "DOUBLE", "extra": "VARCHAR"}


def test_commit_run_batch_merge_and_replace(store: DuckStore) -> None:
    seed = new_run(store, state="running")
    store.commit_run(
        Commit(
            seed, table="m", write="append", pages=1, batch=pa.table({"k": [1, 2], "v": ["a", "b"]})
        )
    )
    merge = new_run(store, state="running")
    batch = pa.table({"k": [2, 3, 2], "v": ["b1", "c", "b2"]})  # the last row per key wins

    written = store.commit_run(
        Commit(merge, table="m", write="merge", primary_key=["k"], pages=1, batch=batch)
    )

    assert written == 2  # k=2 updated, k=3 inserted
    assert table_rows(store, "m", "k") == [(1, "a"), (2, "b2"), (3, "c")]

    replace = new_run(store, state="running")
    batch = pa.table({"k": [9], "v": ["z"]})
    assert store.commit_run(Commit(replace, table="m", write="replace", pages=1, batch=batch)) == 1
    assert table_rows(store, "m") == [(9, "z")]


def test_commit_run_batch_refused_for_cancelled_or_stale_run(store: DuckStore) -> None:
    cancelled = new_run(store)
    store.cancel_run(cancelled)
    with pytest.raises(IllegalTransition):
        store.commit_run(Commit(cancelled, table="t", write="append", pages=1, batch=ids(1)))
    stale = new_run(store, state="running", attempt=2)
    with pytest.raises(StaleAttempt):
        store.commit_run(Commit(stale, table="t", write="append", pages=1, batch=ids(1), attempt=1))
    assert not has_table(store, "t")
    assert store.get_run(stale)["state"] == "running"  # type: ignore[index]


def test_commit_run_batch_incompatible_type_changes_nothing(store: DuckStore) -> None:
    seed = new_run(store, state="running")
    store.commit_run(Commit(seed, table="t", write="append", pages=1, batch=ids(1)))
    bad = new_run(store, state="running")
    with pytest.raises(DestinationError, match="column id is BIGINT"):
        store.commit_run(
            Commit(bad, table="t", write="append", pages=1, batch=pa.table({"id": ["x"]}))
        )
    assert table_rows(store, "t") == [(1,)]
    assert store.get_run(bad)["state"] == "running"  # type: ignore[index]


def test_commit_run_batch_joins_existing_staging(store: DuckStore) -> None:
    run_id = new_run(store, state="running")
    store.stage_batch(run_id, pa.table({"k": [1, 2], "v": ["s1", "s2"]}), {"p": 1}, 1)
    batch = pa.table({"k": [2, 3], "v": ["b2", "b3"]})  # after the staged rows: wins for k=2

    written = store.commit_run(
        Commit(run_id, table="m", write="merge", primary_key=["k"], pages=2, batch=batch)
    )

    assert written == 3
    assert table_rows(store, "m", "k") == [(1, "s1"), (2, "b2"), (3, "b3")]
    assert store.staged_run_ids() == [] and store.checkpoint(run_id) is None


def test_commit_run_batch_with_no_rows_leaves_target_alone(store: DuckStore) -> None:
    run_id = new_run(store, state="running")
    assert store.commit_run(Commit(run_id, table="t", write="append", pages=1, batch=ids())) == 0
    assert not has_table(store, "t")
    assert store.get_run(run_id)["state"] == "succeeded"  # type: ignore[index]
    # a replace makes the table the run's rows, none: created empty, as its columns are known
    # (tests/unit/test_data_fixes.py, issue 12 #12)
    other = new_run(store, state="running")
    assert store.commit_run(Commit(other, table="t", write="replace", pages=1, batch=ids())) == 0
    assert has_table(store, "t")


# -- commit_runs -------------------------------------------------------------------------


def test_commit_runs_fifty_appends_in_one_group(store: DuckStore) -> None:
    run_ids = [new_run(store, f"job{i % 5}", state="running") for i in range(50)]
    items = [
        commit_item(
            run_id,
            ids(*[100 * i + j for j in range(i % 3 + 1)]),
            pages=i,
            cursor=(f"job{i % 5}", str(i)),
        )
        for i, run_id in enumerate(run_ids)
    ]

    results = store.commit_runs(items)

    assert results == [i % 3 + 1 for i in range(50)]
    expected = [(100 * i + j,) for i in range(50) for j in range(i % 3 + 1)]
    assert table_rows(store, "t") == expected
    runs = [store.get_run(r) for r in run_ids]
    assert [(r["state"], r["rows_loaded"], r["pages"]) for r in runs] == [  # type: ignore[index]
        ("succeeded", i % 3 + 1, i) for i in range(50)
    ]
    assert len({r["finished_at"] for r in runs}) == 1  # type: ignore[index]  # one transaction
    assert [store.cursor(f"job{j}") for j in range(5)] == [str(45 + j) for j in range(5)]
    state = store.query("SELECT job, run_id FROM tg.state ORDER BY job")
    assert state == [(f"job{j}", run_ids[45 + j]) for j in range(5)]
    assert store.commit_runs(items) == results  # idempotent
    assert len(table_rows(store, "t")) == len(expected)


def test_group_commit_clears_the_checkpoints_of_runs_that_saved_one(store: DuckStore) -> None:
    saved, fresh = new_run(store, state="running"), new_run(store, "other", state="running")
    store.save_checkpoint(saved, {"offset": 10}, 1)  # a checkpoint with nothing staged
    assert store.commit_runs([commit_item(saved, ids(1)), commit_item(fresh, ids(2))]) == [1, 1]
    assert store.checkpoint(saved) is None and store.checkpoint(fresh) is None
    assert store.query("SELECT count(*) FROM tg.run_checkpoints") == [(0,)]
    assert table_rows(store, "t") == [(1,), (2,)]


def test_commit_runs_mixed_list_fails_per_item(store: DuckStore) -> None:
    seed = new_run(store, state="running")
    store.commit_run(Commit(seed, table="t", write="append", pages=1, batch=ids(0)))
    ok1, cancelled, stale, merge, bad, ok2, done = (
        new_run(store, state="running", attempt=a) for a in (1, 1, 2, 1, 1, 1, 1)
    )
    store.cancel_run(cancelled)
    store.commit_run(Commit(done, table="t", write="append", pages=1, batch=ids(10, 11)))
    items = [
        commit_item(ok1, ids(1, 2), attempt=1),
        commit_item(cancelled, ids(3)),
        commit_item(stale, ids(4), attempt=1),
        commit_item(
            merge, pa.table({"k": [1], "v": ["m"]}), table="m", write="merge", primary_key=["k"]
        ),
        commit_item(bad, pa.table({"id": ["not a number"]})),
        commit_item(ok2, ids(5)),
        commit_item(done, ids(99)),
        commit_item("nope", ids(6)),
    ]

    results = store.commit_runs(items)

    assert results[0] == 2 and results[3] == 1 and results[5] == 1 and results[6] == 2
    assert isinstance(results[1], IllegalTransition) and results[1].current == "cancelled"
    assert isinstance(results[2], StaleAttempt) and results[2].current == 2
    assert isinstance(results[4], DestinationError) and "column id" in str(results[4])
    assert isinstance(results[7], RunNotFound)
    assert table_rows(store, "t") == [(0,), (10,), (11,), (1,), (2,), (5,)]
    assert table_rows(store, "m") == [(1, "m")]
    states = [store.get_run(r)["state"] for r in (ok1, cancelled, stale, merge, bad, ok2)]  # type: ignore[index]
    assert states == ["succeeded", "cancelled", "running", "succeeded", "running", "succeeded"]


def test_commit_runs_keeps_list_order_across_write_modes(store: DuckStore) -> None:
    a, b, c = (new_run(store, state="running") for _ in range(3))
    results = store.commit_runs(
        [
            commit_item(a, ids(1)),
            commit_item(b, ids(2), write="replace"),  # must see a's row, and remove it
            commit_item(c, ids(3)),
        ]
    )
    assert results == [1, 1, 1]
    assert table_rows(store, "t") == [(2,), (3,)]


def test_commit_runs_cursor_moves_forward_only_in_order(store: DuckStore) -> None:
    committed_cursor(store, "orders", "10")
    runs = [new_run(store, state="running") for _ in range(4)]
    values = ["5", "12", "11", "12"]
    items = [
        commit_item(r, ids(i), cursor=("orders", v))
        for i, (r, v) in enumerate(zip(runs, values, strict=True))
    ]
    assert store.commit_runs(items) == [1, 1, 1, 1]
    assert store.query("SELECT cursor, run_id FROM tg.state WHERE job = 'orders'") == [
        ("12", runs[3])  # not behind: an equal value is written again, as write_cursor does
    ]


def test_commit_runs_differing_column_types_fall_back_to_one_by_one(store: DuckStore) -> None:
    a, b, c = (new_run(store, state="running") for _ in range(3))
    results = store.commit_runs(
        [
            commit_item(a, pa.table({"id": pa.array([1], pa.int32())})),
            commit_item(b, pa.table({"id": [2.5], "x": ["b"]})),  # widens id, adds x
            commit_item(c, pa.table({"ID": [3]})),  # same column, other case
        ]
    )
    assert results == [1, 1, 1]
    assert table_rows(store, "t") == [(1.0, None), (2.5, "b"), (3.0, None)]


def test_commit_runs_with_staging_and_bad_items(store: DuckStore) -> None:
    staged = new_run(store, state="running")
    store.stage_batch(staged, ids(1))
    plain = new_run(store, state="running")
    # a bad field is refused when the Commit is built, before any list reaches the store
    with pytest.raises(ValueError, match="Commit.write"):
        commit_item(plain, ids(3), write="sideways")
    with pytest.raises(ValueError, match="Commit.table"):
        commit_item(plain, ids(3), table="bad name")
    with pytest.raises(TypeError, match="unknown"):
        commit_item(plain, ids(4), unknown=True)
    results = store.commit_runs(
        [
            commit_item(staged, ids(2)),
            commit_item(plain, pa.table({"__tg_seq": [1]})),
            commit_item(plain, ids(5)),
        ]
    )
    assert results[0] == 2 and results[2] == 1
    assert isinstance(results[1], DestinationError) and "reserved" in str(results[1])
    assert table_rows(store, "t") == [(1,), (2,), (5,)]
    assert store.staged_run_ids() == []
    assert store.commit_runs([]) == []


def test_commit_runs_group_refused_by_target_falls_back(store: DuckStore) -> None:
    seed = new_run(store, state="running")
    store.commit_run(Commit(seed, table="t", write="append", pages=1, batch=ids(0)))
    bad1, bad2, other = (new_run(store, state="running") for _ in range(3))
    text = pa.table({"id": ["x"]})
    results = store.commit_runs(
        [commit_item(bad1, text), commit_item(other, ids(7), table="u"), commit_item(bad2, text)]
    )
    assert isinstance(results[0], DestinationError) and isinstance(results[2], DestinationError)
    assert results[1] == 1
    assert table_rows(store, "t") == [(0,)] and table_rows(store, "u") == [(7,)]
    assert [store.get_run(r)["state"] for r in (bad1, bad2, other)] == [  # type: ignore[index]
        "running",
        "running",
        "succeeded",
    ]
