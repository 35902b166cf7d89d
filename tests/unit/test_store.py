"""DuckStore against real DuckDB files: metadata, the staging/commit path, exactly-once."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb
import pyarrow as pa
import pytest

from tests.kit.stepclock import T0, Clock
from tg_actors.attempts import Commit
from tg_actors.errors import (
    ConfigError,
    DestinationError,
    IllegalTransition,
    JobNotFound,
    RunNotFound,
    TableNotFound,
)
from tg_actors.interfaces import Upserted
from tg_actors.store import progress
from tg_actors.store.duckdb import DuckStore
from tg_actors.store.schema import jsonable


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "turbo_giggle.duckdb"


@pytest.fixture
def store(db_path: Path) -> Iterator[DuckStore]:
    s = DuckStore(db_path, clock=Clock())
    yield s
    s.close()


def new_run(store: DuckStore, job: str = "orders", offset: int = 0, **kw: Any) -> str:
    run_id = store.create_run(job, T0 + timedelta(minutes=offset), "schedule", **kw)
    assert run_id is not None
    return run_id


def rows(path: Path | DuckStore, sql: str) -> list[tuple[Any, ...]]:
    if isinstance(path, DuckStore):
        return path.con.execute(sql).fetchall()
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


# -- schema and jobs ---------------------------------------------------------------------


def test_schema_created_with_parent_dir(store: DuckStore, db_path: Path) -> None:
    assert db_path.exists()
    tables = rows(
        store, "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'tg' ORDER BY 1"
    )
    assert [t for (t,) in tables] == [
        "commands",
        "jobs",
        "run_checkpoints",
        "run_checks",
        "run_logs",
        "runs",
        "staged_batches",
        "state",
    ]
    assert store.list_tables() == []


def test_reopen_is_idempotent_and_close_twice(db_path: Path) -> None:
    s = DuckStore(db_path)
    s.upsert_job("a", {"name": "a"}, "file")
    s.close()
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.list_jobs()
    with DuckStore(db_path) as again:
        assert [j["name"] for j in again.list_jobs()] == ["a"]


def test_file_named_tg_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tg"):
        DuckStore(tmp_path / "tg.duckdb")


def test_jobs_upsert_list_pause_delete(store: DuckStore) -> None:
    spec = {"name": "orders", "source": {"auth": {"token": "${SHOP_TOKEN}"}}}
    assert store.upsert_job("orders", spec, "file") is True
    assert store.upsert_job("alpha", {"name": "alpha"}, "api") is True
    job = store.get_job("orders")
    assert job is not None
    assert job["spec"] == spec and job["paused"] is False and job["origin"] == "file"
    assert job["created_at"].tzinfo is UTC and job["created_at"] == job["updated_at"]

    paused = store.set_paused("orders", True)
    assert paused["paused"] is True
    assert store.upsert_job("orders", {"name": "orders", "v": 2}, "api") is False
    replaced = store.get_job("orders")
    assert replaced is not None
    assert replaced["paused"] is True  # kept on replace
    assert replaced["created_at"] == job["created_at"]
    assert replaced["updated_at"] > job["updated_at"]
    assert replaced["spec"] == {"name": "orders", "v": 2} and replaced["origin"] == "api"

    assert [j["name"] for j in store.list_jobs()] == ["alpha", "orders"]
    # many by name in one query: what get_job answers for each, a missing one left out
    many = store.get_jobs(["orders", "nope", "alpha"])
    assert many == {"orders": store.get_job("orders"), "alpha": store.get_job("alpha")}
    assert store.get_jobs([]) == {}
    assert store.delete_job("orders") is True
    assert store.delete_job("orders") is False
    assert store.get_job("orders") is None
    with pytest.raises(JobNotFound):
        store.set_paused("orders", False)
    with pytest.raises(ValueError, match="origin"):
        store.upsert_job("x", {}, "web")


def test_upsert_jobs_stores_a_folder_in_one_transaction(store: DuckStore) -> None:
    store.upsert_job("orders", {"name": "orders"}, "api")
    store.set_paused("orders", True)
    done = store.upsert_jobs(
        [("orders", {"name": "orders", "v": 2}), ("new", {"name": "new"}), ("new", {"v": 3})],
        "file",
    )
    assert done == [
        Upserted("orders", created=False, paused=True),  # a replace keeps paused
        Upserted("new", created=True, paused=False),
        Upserted("new", created=False, paused=False),  # a name given twice: the last wins
    ]
    assert [(j["name"], j["spec"], j["origin"]) for j in store.list_jobs()] == [
        ("new", {"v": 3}, "file"),
        ("orders", {"name": "orders", "v": 2}, "file"),
    ]
    # one bad spec and nothing of the batch is stored
    with pytest.raises(TypeError):
        store.upsert_jobs([("fresh", {"name": "fresh"}), ("bad", {"x": {1, 2}})], "file")
    assert [j["name"] for j in store.list_jobs()] == ["new", "orders"]
    assert store.upsert_jobs([], "file") == []


# -- runs and logs -----------------------------------------------------------------------


def test_create_run_dedupes_on_job_and_scheduled_for(store: DuckStore) -> None:
    first = store.create_run("orders", T0, "schedule")
    assert first is not None and len(first) == 32
    assert store.create_run("orders", T0, "catchup") is None  # same tick: not a second run
    assert store.create_run("other", T0, "schedule") is not None
    assert store.create_run("orders", T0 + timedelta(seconds=1), "manual") is not None
    # the same instant in another zone is the same tick
    berlin = T0.astimezone(datetime.now().astimezone().tzinfo)
    assert store.create_run("orders", berlin, "schedule") is None
    assert len(store.list_runs(job="orders")) == 2
    with pytest.raises(ValueError, match="timezone-aware"):
        store.create_run("orders", T0.replace(tzinfo=None), "schedule")


def test_run_fields_update_get_and_order(store: DuckStore) -> None:
    a = new_run(store, offset=0, priority=70)
    b = new_run(store, offset=1)
    c = new_run(store, job="customers", offset=0)
    run = store.get_run(a)
    assert run is not None
    assert set(run) == {
        "run_id", "job", "state", "trigger", "attempt", "scheduled_for", "queued_at",
        "started_at", "finished_at", "rows_loaded", "pages", "error", "priority", "engine",
        "range_from", "range_to", "skipped_requests", "rows_discarded",
    }  # fmt: skip
    assert run["state"] == "queued" and run["attempt"] == 1 and run["priority"] == 70
    assert run["scheduled_for"] == T0 and run["scheduled_for"].tzinfo is UTC
    assert run["started_at"] is None and run["rows_loaded"] == 0

    started = T0 + timedelta(hours=1)
    updated = store.update_run(a, state="running", started_at=started, engine="engine-1")
    assert updated["state"] == "running" and updated["started_at"] == started
    assert updated["engine"] == "engine-1" and updated["priority"] == 70  # others unchanged
    store.update_run(b, state="failed", error="boom", attempt=3)
    assert store.get_run(b)["error"] == "boom"  # type: ignore[index]

    assert [r["run_id"] for r in store.list_runs()] == [c, b, a]  # newest first
    assert [r["run_id"] for r in store.list_runs(limit=2)] == [c, b]
    assert [r["run_id"] for r in store.list_runs(job="orders")] == [b, a]
    assert [r["run_id"] for r in store.list_runs(state="failed")] == [b]
    assert [r["run_id"] for r in store.list_runs(job="orders", state="queued")] == []
    assert [r["run_id"] for r in store.open_runs()] == [a, c]  # oldest first
    assert store.run_counts() == {
        "queued": 1, "running": 1, "retrying": 0, "succeeded": 0,
        "failed": 1, "cancelled": 0, "skipped": 0,
    }  # fmt: skip

    with pytest.raises(ValueError, match="job"):
        store.update_run(a, job="x")
    with pytest.raises(RunNotFound):
        store.update_run("nope", state="running")
    with pytest.raises(RunNotFound):
        store.update_run("nope")
    with pytest.raises(ValueError, match="timezone-aware"):
        store.update_run(a, finished_at=datetime(2026, 1, 1))
    assert store.get_run("nope") is None


def test_last_tick_counts_only_schedule_and_catchup(store: DuckStore) -> None:
    assert store.last_tick("orders") is None
    store.create_run("orders", T0, "schedule")
    store.create_run("orders", T0 + timedelta(hours=1), "catchup")
    store.create_run("orders", T0 + timedelta(hours=5), "manual")
    store.create_run("orders", T0 + timedelta(hours=6), "after:customers")
    assert store.last_tick("orders") == T0 + timedelta(hours=1)


def test_logs_in_ts_order(store: DuckStore) -> None:
    a, b = new_run(store), new_run(store, offset=1)
    store.add_logs(
        [
            (a, T0 + timedelta(seconds=2), "INFO", "second"),
            (a, T0 + timedelta(seconds=1), "INFO", "first"),
            (b, T0, "ERROR", "other run"),
            (a, T0 + timedelta(seconds=2), "WARNING", "third, same ts"),
        ]
    )
    store.add_logs([])
    logs = store.get_logs(a)
    assert [entry["message"] for entry in logs] == ["first", "second", "third, same ts"]
    assert logs[0] == {"ts": T0 + timedelta(seconds=1), "level": "INFO", "message": "first"}
    assert logs[0]["ts"].tzinfo is UTC
    assert store.get_logs("none") == []


# -- staging and commit ------------------------------------------------------------------


def table(**columns: list[Any]) -> pa.Table:
    return pa.table(columns)


def test_a_runs_finished_at_is_taken_once_its_rows_are_written(db_path: Path) -> None:
    """The run's duration holds its commit's write (1M rows: seconds after the last page):
    `finished_at` is read from the clock after the write, the cursor's stamp before it."""
    clock = Clock()
    store = DuckStore(db_path, clock=clock)
    try:
        run = new_run(store)
        store.stage_batch(run, table(id=[1, 2], name=["a", "b"]))
        write = clock.now  # the clock's last reading before the commit
        commit = Commit(run, table="orders", write="append", primary_key=[], pages=1)
        assert store.commit_run(replace(commit, cursor=("orders", "2"))) == 2
        done = store.get_run(run)
        stamped = rows(store, "SELECT updated_at FROM tg.state WHERE job = 'orders'")[0][0]
    finally:
        store.close()
    assert done is not None and done["state"] == "succeeded"
    assert write < stamped < done["finished_at"] <= clock.now


def test_stage_batches_with_new_column_then_append(store: DuckStore) -> None:
    run = new_run(store)
    assert store.staged_rows(run) == 0
    assert store.stage_batch(run, table(id=[1, 2], name=["a", "b"])) == 2
    assert store.stage_batch(run, table(id=[3], name=["c"], extra=[True])) == 3
    assert store.stage_batch(run, table(name=["d"], id=[4])) == 4  # other column order
    assert store.staged_rows(run) == 4
    assert store.staged_run_ids() == [run]

    assert (
        store.commit_run(Commit(run, table="orders", write="append", primary_key=[], pages=3)) == 4
    )
    assert rows(store, "SELECT id, name, extra FROM orders ORDER BY id") == [
        (1, "a", None), (2, "b", None), (3, "c", True), (4, "d", None),
    ]  # fmt: skip
    done = store.get_run(run)
    assert done is not None
    assert (done["state"], done["rows_loaded"], done["pages"]) == ("succeeded", 4, 3)
    assert done["finished_at"] is not None and done["finished_at"].tzinfo is UTC
    assert store.staged_rows(run) == 0 and store.staged_run_ids() == []

    # a second run appends; a column missing in the target is added
    run2 = new_run(store, offset=1)
    store.stage_batch(run2, table(id=[5], note=["new"]))
    assert store.commit_run(Commit(run2, table="orders", write="append", pages=1)) == 1
    assert rows(store, "SELECT count(*), count(note) FROM orders") == [(5, 1)]
    assert [c["name"] for c in store.list_tables()[0]["columns"]] == [
        "id", "name", "extra", "note",
    ]  # fmt: skip


def test_commit_twice_is_a_no_op(store: DuckStore) -> None:
    run = new_run(store)
    store.stage_batch(run, table(id=[1, 2, 3]))
    kwargs: dict[str, Any] = {
        "table": "t",
        "write": "append",
        "pages": 1,
        "cursor": ("orders", "c1"),
    }
    assert store.commit_run(Commit(run, **kwargs)) == 3
    # a retried call, even with a batch re-staged in between, must not double rows
    with pytest.raises(IllegalTransition):
        store.stage_batch(run, table(id=[9]))
    assert store.commit_run(Commit(run, **kwargs)) == 3
    assert store.commit_run(Commit(run, **{**kwargs, "cursor": ("orders", "c2")})) == 3
    assert rows(store, "SELECT count(*) FROM t") == [(3,)]
    assert store.cursor("orders") == "c1"


def test_merge_across_runs_last_row_wins(store: DuckStore) -> None:
    run1 = new_run(store)
    store.stage_batch(run1, table(id=[1, 2, 3], v=["a", "b", "c"], n=[1, 1, 1]))
    assert (
        store.commit_run(Commit(run1, table="m", write="merge", primary_key=["id"], pages=1)) == 3
    )

    run2 = new_run(store, offset=1)
    # id 2 appears three times in this run, across batches: the last staged row wins
    store.stage_batch(run2, table(id=[2, 4, 2], v=["b1", "d", "b2"], n=[2, 2, 2]))
    store.stage_batch(run2, table(id=[5, 2], v=["e", "b3"], n=[3, 3]))
    assert (
        store.commit_run(Commit(run2, table="m", write="merge", primary_key=["id"], pages=2)) == 3
    )
    assert rows(store, "SELECT id, v, n FROM m ORDER BY id") == [
        (1, "a", 1), (2, "b3", 3), (3, "c", 1), (4, "d", 2), (5, "e", 3),
    ]  # fmt: skip

    # composite key; a column absent from this run keeps its value on update
    run3 = new_run(store, offset=2)
    store.stage_batch(run3, table(id=[1, 6], v=["a", "f"], w=[10, 60]))
    store.commit_run(Commit(run3, table="m", write="merge", primary_key=["id", "v"], pages=1))
    assert rows(store, "SELECT id, v, n, w FROM m WHERE id IN (1, 6) ORDER BY id") == [
        (1, "a", 1, 10), (6, "f", None, 60),
    ]  # fmt: skip


def test_a_merge_into_an_empty_table_inserts_the_last_row_of_each_key(store: DuckStore) -> None:
    """A table's first load (or an emptied one) has nothing to match: the run's rows go in
    by INSERT, the last staged row of each key only, as the MERGE would have written them."""
    merge = {"table": "fresh", "write": "merge", "primary_key": ["id"]}
    for emptied in (False, True):
        run = new_run(store, offset=3 if emptied else 0)
        store.stage_batch(run, table(id=[1, 2, 1], v=["a", "b", "a2"]))
        store.stage_batch(run, table(id=[3, 2], v=["c", "b2"]))
        assert store.commit_run(Commit(run, pages=2, **merge)) == 3
        assert rows(store, "SELECT id, v FROM fresh ORDER BY id") == [
            (1, "a2"), (2, "b2"), (3, "c"),
        ]  # fmt: skip
        store.con.execute("DELETE FROM fresh")  # the second time round: there, but empty
    later = new_run(store, offset=5)
    store.con.execute("INSERT INTO fresh VALUES (1, 'kept'), (4, 'd')")
    store.stage_batch(later, table(id=[4, 5], v=["d2", "e"]))
    assert store.commit_run(Commit(later, pages=1, **merge)) == 2  # a MERGE again
    assert rows(store, "SELECT id, v FROM fresh ORDER BY id") == [
        (1, "kept"), (4, "d2"), (5, "e"),
    ]  # fmt: skip


def test_merge_key_errors(store: DuckStore) -> None:
    run = new_run(store)
    store.stage_batch(run, table(id=[1, None], v=["a", "b"]))
    with pytest.raises(DestinationError, match="NULL primary key"):
        store.commit_run(Commit(run, table="m", write="merge", primary_key=["id"], pages=1))
    with pytest.raises(DestinationError, match=r"table m: .*\['nope'\]"):
        store.commit_run(Commit(run, table="m", write="merge", primary_key=["nope"], pages=1))
    with pytest.raises(DestinationError, match="primary_key"):
        store.commit_run(Commit(run, table="m", write="merge", primary_key=[], pages=1))
    assert store.get_run(run)["state"] == "queued"  # type: ignore[index]
    assert store.staged_rows(run) == 2 and store.list_tables() == []


def test_replace(store: DuckStore) -> None:
    run1 = new_run(store)
    store.stage_batch(run1, table(id=[1, 2, 3], old=["x", "y", "z"]))
    store.commit_run(Commit(run1, table="r", write="replace", pages=1))
    run2 = new_run(store, offset=1)
    store.stage_batch(run2, table(id=[7, 8]))
    assert store.commit_run(Commit(run2, table="r", write="replace", pages=1)) == 2
    # exactly the run's rows; the table keeps its columns (old is NULL now)
    assert rows(store, "SELECT id, old FROM r ORDER BY id") == [(7, None), (8, None)]

    # nothing staged: the table becomes the run's rows, none (issue 12 #12)
    run3 = new_run(store, offset=2)
    assert store.commit_run(Commit(run3, table="r", write="replace", pages=0)) == 0
    assert rows(store, "SELECT count(*) FROM r") == [(0,)]
    assert store.get_run(run3)["state"] == "succeeded"  # type: ignore[index]
    # nothing staged and no table yet: no table is created
    run4 = new_run(store, offset=3)
    assert store.commit_run(Commit(run4, table="fresh", write="append", pages=0)) == 0
    assert [t["name"] for t in store.list_tables()] == ["r"]


def test_failing_commit_changes_nothing(store: DuckStore) -> None:
    run1 = new_run(store)
    store.stage_batch(run1, table(id=[1], amount=[10]))
    store.commit_run(Commit(run1, table="t", write="append", pages=1, cursor=("orders", "c1")))
    # a constraint of the user's own: DuckDB refuses the insert itself
    store.con.execute("CREATE TABLE c (id BIGINT, amount BIGINT CHECK (amount > 0))")

    run2 = new_run(store, offset=1)
    store.update_run(run2, state="running")
    store.stage_batch(run2, table(id=[2], amount=[-5], more=[1.5]))
    with pytest.raises(DestinationError, match="table c: .*CHECK") as info:
        store.commit_run(Commit(run2, table="c", write="append", pages=1, cursor=("orders", "c2")))
    assert isinstance(info.value.__cause__, duckdb.Error)
    assert rows(store, "SELECT count(*) FROM c") == [(0,)]
    assert [c["name"] for c in store.list_tables()[0]["columns"]] == ["id", "amount"]  # no more
    assert store.cursor("orders") == "c1"
    run = store.get_run(run2)
    assert run is not None and (run["state"], run["rows_loaded"]) == ("running", 0)
    assert store.staged_rows(run2) == 1  # kept, so the caller can inspect or discard it

    # the store stays usable after the rollback
    store.discard_run(run2)
    store.discard_run(run2)  # no-op
    assert store.staged_rows(run2) == 0
    assert store.commit_run(Commit(run2, table="t", write="append", pages=0)) == 0


def test_commit_guards(store: DuckStore) -> None:
    with pytest.raises(RunNotFound):
        store.commit_run(Commit("0" * 32, table="t", write="append", pages=0))
    with pytest.raises(RunNotFound):
        store.stage_batch("0" * 32, table(id=[1]))
    run = new_run(store)
    # refused when the Commit is built: nothing reaches DuckDB
    for bad in ["1abc", "a-b", "x" * 64, "main.t", 't"; DROP TABLE tg.runs; --', "t\n"]:
        with pytest.raises(ValueError, match="Commit.table: invalid table name"):
            store.commit_run(Commit(run, table=bad, write="append", pages=0))
    with pytest.raises(ValueError, match="Commit.write"):
        store.commit_run(Commit(run, table="t", write="upsert", pages=0))  # type: ignore[arg-type]
    store.stage_batch(run, table(id=[1]))
    store.update_run(run, state="cancelled")
    with pytest.raises(IllegalTransition):
        store.commit_run(Commit(run, table="t", write="append", pages=1))
    assert store.list_tables() == []
    with pytest.raises(DestinationError, match="reserved"):
        store.stage_batch(new_run(store, offset=1), table(__tg_seq=[1]))


def test_cursor_written_with_the_commit(store: DuckStore) -> None:
    assert store.cursor("orders") is None
    run = new_run(store)
    store.stage_batch(run, table(id=[1]))
    store.commit_run(
        Commit(run, table="t", write="append", pages=1, cursor=("orders", "2026-01-01"))
    )
    assert store.cursor("orders") == "2026-01-01"
    assert rows(store, "SELECT run_id FROM tg.state") == [(run,)]


def test_types_widen_across_pages_and_runs(store: DuckStore) -> None:
    run = new_run(store)
    store.stage_batch(run, table(id=[1], amount=[10], tag=[None]))  # tag: Arrow null type
    store.stage_batch(run, table(id=[2], amount=[10.5], tag=["x"]))  # no rounding to 11
    store.commit_run(Commit(run, table="w", write="append", pages=2))
    assert rows(store, "SELECT id, amount, tag FROM w ORDER BY id") == [
        (1, 10.0, None), (2, 10.5, "x"),
    ]  # fmt: skip

    run2 = new_run(store, offset=1)
    store.stage_batch(run2, table(id=[3.25], amount=[1]))  # BIGINT target id widens to DOUBLE
    store.commit_run(Commit(run2, table="w", write="append", pages=1))
    assert rows(store, "SELECT id FROM w ORDER BY id") == [(1.0,), (2.0,), (3.25,)]


def test_odd_column_names(store: DuckStore) -> None:
    run = new_run(store)
    odd: dict[str, list[Any]] = {
        "order": [1, 2, 1],
        "Total Amount": [1.5, 2.5, 9.0],
        'say "hi"': ["a", "b", "c"],
    }
    store.stage_batch(run, table(**odd))
    assert (
        store.commit_run(Commit(run, table="Odd_1", write="merge", primary_key=["order"], pages=1))
        == 2
    )
    assert rows(store, 'SELECT "order", "Total Amount", "say ""hi""" FROM "Odd_1" ORDER BY 1') == [
        (1, 9.0, "c"), (2, 2.5, "b"),
    ]  # fmt: skip
    preview = store.preview_table("odd_1")
    assert preview["columns"] == ["order", "Total Amount", 'say "hi"']


def test_reopen_after_close_shows_committed_rows(db_path: Path) -> None:
    store = DuckStore(db_path)
    done, pending = new_run(store), new_run(store, offset=1)
    store.stage_batch(done, table(id=[1, 2]))
    store.commit_run(Commit(done, table="kept", write="append", pages=1, cursor=("orders", "c")))
    store.stage_batch(pending, table(id=[3]))  # staged, never committed
    store.close()

    assert rows(db_path, "SELECT id FROM kept ORDER BY id") == [(1,), (2,)]
    assert rows(db_path, "SELECT cursor FROM tg.state") == [("c",)]
    assert rows(db_path, f"SELECT state FROM tg.runs WHERE run_id = '{done}'") == [("succeeded",)]
    with DuckStore(db_path) as again:
        assert again.list_tables()[0] == {
            "name": "kept", "rows": 2, "columns": [{"name": "id", "type": "BIGINT"}],
        }  # fmt: skip
        assert again.staged_run_ids() == [pending]  # survives, for the actor to discard
        again.discard_run(pending)


def test_large_commit(store: DuckStore) -> None:
    n = 100_000
    run = new_run(store)
    for start in range(0, n, 25_000):
        ids = list(range(start, start + 25_000))
        store.stage_batch(run, table(id=ids, v=[i * 2 for i in ids], s=[str(i) for i in ids]))
    assert (
        store.commit_run(Commit(run, table="big", write="merge", primary_key=["id"], pages=4)) == n
    )
    assert rows(store, "SELECT count(*), count(DISTINCT id), sum(v) FROM big") == [
        (n, n, n * (n - 1))
    ]


def test_list_and_preview_tables(store: DuckStore) -> None:
    run = new_run(store)
    batch = pa.table(
        {
            "id": [1],
            "ts": pa.array([T0], pa.timestamp("us", tz="UTC")),
            "price": pa.array([Decimal("1.25")], pa.decimal128(10, 2)),
            "info": [{"a": 1, "b": "x"}],
            "tags": [["p", "q"]],
            "ratio": [float("nan")],
        }
    )
    store.stage_batch(run, batch)
    store.commit_run(Commit(run, table="p", write="append", pages=1))
    [listed] = store.list_tables()
    assert listed["rows"] == 1
    assert [c["type"] for c in listed["columns"]] == [
        "BIGINT", "TIMESTAMP WITH TIME ZONE", "DECIMAL(10,2)",
        "STRUCT(a BIGINT, b VARCHAR)", "VARCHAR[]", "DOUBLE",
    ]  # fmt: skip
    preview = store.preview_table("p", limit=5)
    assert preview == {
        "columns": ["id", "ts", "price", "info", "tags", "ratio"],
        "rows": [[1, "2026-03-01T12:00:00+00:00", 1.25, {"a": 1, "b": "x"}, ["p", "q"], None]],
    }
    assert store.preview_table("p", limit=0)["rows"] == []
    with pytest.raises(TableNotFound):
        store.preview_table("missing")
    with pytest.raises(TableNotFound):
        store.preview_table("runs")  # tg tables are not data tables


def test_failed_batch_leaves_staging_unchanged(store: DuckStore) -> None:
    run = new_run(store)
    store.stage_batch(run, table(id=[1], info=[{"a": 1}]))
    with pytest.raises(DestinationError, match=run):
        store.stage_batch(run, table(id=[2], info=[5], extra=["x"]))  # STRUCT vs BIGINT
    assert store.staged_rows(run) == 1
    store.stage_batch(run, table(id=[3]))
    store.commit_run(Commit(run, table="s", write="append", pages=2))
    assert [c["name"] for c in store.list_tables()[0]["columns"]] == ["id", "info"]  # no extra


def test_arrow_flavours_stage_as_plain_types(store: DuckStore) -> None:
    run = new_run(store)
    batch = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),
            "sv": pa.array(["a", "b"], pa.string_view()),  # what polars emits
            "cat": pa.array(["x", "x"]).dictionary_encode(),  # polars Categorical
        }
    )
    store.stage_batch(run, batch.to_batches()[0])  # a RecordBatch is accepted too
    store.stage_batch(run, pa.table({"id": [3], "sv": ["c"], "cat": ["new value"]}))
    store.commit_run(Commit(run, table="f", write="append", pages=2))
    [listed] = store.list_tables()
    assert [c["type"] for c in listed["columns"]] == ["BIGINT", "VARCHAR", "VARCHAR"]
    assert rows(store, "SELECT cat FROM f ORDER BY id") == [("x",), ("x",), ("new value",)]


def test_committed_rows_survive_a_crash(db_path: Path) -> None:
    """Killed without close(): the WAL replays the commit; the staged run is still pending."""
    script = f"""
import os, pyarrow as pa
from datetime import UTC, datetime
from tg_actors.attempts import Commit
from tg_actors.store.duckdb import DuckStore
from tg_actors.store.schema import jsonable
s = DuckStore({str(db_path)!r})
done = s.create_run("orders", datetime(2026, 1, 1, tzinfo=UTC), "schedule")
s.stage_batch(done, pa.table({{"id": [1, 2]}}))
s.commit_run(Commit(done, table="t", write="append", pages=1, cursor=("orders", "c9")))
pending = s.create_run("orders", datetime(2026, 1, 2, tzinfo=UTC), "schedule")
s.stage_batch(pending, pa.table({{"id": [3]}}), {{"next": "/p2"}}, 1)
s.stage_batch(pending, pa.table({{"id": [4, 5]}}), {{"next": "/p3"}}, 2)
os._exit(0)
"""
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, cwd=root)
    with DuckStore(db_path) as store:
        assert rows(store, "SELECT id FROM t ORDER BY id") == [(1,), (2,)]
        assert store.cursor("orders") == "c9"
        assert store.run_counts()["succeeded"] == 1
        [pending] = store.staged_run_ids()
        assert store.staged_rows(pending) == 3
        assert store.checkpoint(pending) == {"checkpoint": {"next": "/p3"}, "pages": 2, "rows": 3}


def test_unknown_or_malformed_run_ids(store: DuckStore) -> None:
    for bad in ["nope", 'x"; DROP TABLE tg.runs; --']:
        assert store.staged_rows(bad) == 0
        store.discard_run(bad)
        with pytest.raises(RunNotFound):
            store.stage_batch(bad, table(id=[1]))
        with pytest.raises(RunNotFound):
            store.commit_run(Commit(bad, table="t", write="append", pages=0))


def test_jsonable_values() -> None:
    value = jsonable(
        [
            Decimal("2.50"),
            datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
            datetime(2026, 1, 1),
            date(2026, 1, 2),
            time(3, 4),
            timedelta(days=1, seconds=5),
            UUID(int=1),
            b"\x00\xff",
            {1: float("inf"), "k": (True, None)},
        ]
    )
    assert value == [
        2.5,
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T00:00:00",
        "2026-01-02",
        "03:04:00",
        "1 day, 0:00:05",
        "00000000-0000-0000-0000-000000000001",
        "00ff",
        {"1": None, "k": [True, None]},
    ]
    assert json.loads(json.dumps(value, allow_nan=False)) == value


# -- checkpoints -------------------------------------------------------------------------


def test_checkpoint_saved_with_the_batch(store: DuckStore) -> None:
    run = new_run(store)
    assert store.checkpoint(run) is None
    assert store.stage_batch(run, table(id=[1, 2]), {"next": "/p2"}, 1) == 2
    assert store.checkpoint(run) == {"checkpoint": {"next": "/p2"}, "pages": 1, "rows": 2}
    # a batch without a checkpoint keeps the stored one and its row count true
    store.stage_batch(run, table(id=[3]))
    assert store.checkpoint(run) == {"checkpoint": {"next": "/p2"}, "pages": 1, "rows": 3}
    # a page that produced no rows
    store.save_checkpoint(run, {"next": "/p4", "seen": [1, None]}, 3)
    assert store.checkpoint(run) == {
        "checkpoint": {"next": "/p4", "seen": [1, None]}, "pages": 3, "rows": 3,
    }  # fmt: skip
    store.stage_batch(run, table(id=[4, 5]), checkpoint={"next": None}, pages=4)
    assert store.checkpoint(run) == {"checkpoint": {"next": None}, "pages": 4, "rows": 5}

    # a bad checkpoint is refused before anything is staged
    bad: list[tuple[Any, Any]] = [
        ({"a": 1}, None), (None, 2), ({"a": 1}, -1), (["x"], 1), ({"t": T0}, 1),
        ({"f": float("nan")}, 1),
    ]  # fmt: skip
    for checkpoint, pages in bad:
        with pytest.raises((ValueError, TypeError)):
            store.stage_batch(run, table(id=[9]), checkpoint, pages)
    assert store.staged_rows(run) == 5
    assert store.checkpoint(run) == {"checkpoint": {"next": None}, "pages": 4, "rows": 5}

    # a run with nothing staged yet can have a checkpoint too
    other = new_run(store, offset=1)
    store.save_checkpoint(other, {"offset": 100}, 1)
    assert store.checkpoint(other) == {"checkpoint": {"offset": 100}, "pages": 1, "rows": 0}


def test_commit_and_discard_clear_the_checkpoint(store: DuckStore) -> None:
    done, dropped = new_run(store), new_run(store, offset=1)
    store.stage_batch(done, table(id=[1]), {"page": 2}, 1)
    store.stage_batch(dropped, table(id=[2]), {"page": 2}, 1)
    assert store.commit_run(Commit(done, table="t", write="append", pages=1)) == 1
    assert store.checkpoint(done) is None
    store.discard_run(dropped)
    assert store.checkpoint(dropped) is None and store.staged_rows(dropped) == 0
    assert rows(store, "SELECT count(*) FROM tg.run_checkpoints") == [(0,)]

    # a failed commit keeps both: the run can still be resumed or discarded
    run = new_run(store, offset=2)
    store.stage_batch(run, table(id=["x"]), {"page": 2}, 1)
    with pytest.raises(DestinationError, match="column id is BIGINT"):
        store.commit_run(Commit(run, table="t", write="append", pages=1))
    assert store.checkpoint(run) == {"checkpoint": {"page": 2}, "pages": 1, "rows": 1}

    # only open runs are staged or checkpointed
    store.update_run(run, state="cancelled")
    with pytest.raises(IllegalTransition):
        store.save_checkpoint(run, {"page": 3}, 2)
    with pytest.raises(IllegalTransition):
        store.stage_batch(run, table(id=[3]), {"page": 3}, 2)
    assert store.checkpoint(run) == {"checkpoint": {"page": 2}, "pages": 1, "rows": 1}
    for missing in ["0" * 32, 'x"; --']:
        with pytest.raises(RunNotFound):
            store.save_checkpoint(missing, {}, 0)
        assert store.checkpoint(missing) is None


def test_batch_and_checkpoint_are_one_transaction(
    store: DuckStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = new_run(store)
    store.stage_batch(run, table(id=[1]), {"page": 2}, 1)
    folder = db_path.with_name(db_path.name + ".staging") / run
    assert [p.name for p in folder.iterdir()] == ["000000000000.arrow"]

    def fail(*args: Any) -> None:
        raise duckdb.IOException("disk gone")

    monkeypatch.setattr(progress, "save", fail)  # dies after the file was written
    with pytest.raises(DestinationError, match="disk gone"):
        store.stage_batch(run, table(id=[2, 3], new=["x", "y"]), {"page": 3}, 2)
    monkeypatch.undo()
    assert store.staged_rows(run) == 1
    assert store.checkpoint(run) == {"checkpoint": {"page": 2}, "pages": 1, "rows": 1}
    assert [p.name for p in folder.iterdir()] == ["000000000000.arrow"]  # its file went
    columns = rows(store, f'SELECT column_name FROM (DESCRIBE tg."stage_{run}")')
    assert columns == [("id",), ("__tg_seq",)]  # no column `new`
    assert store.commit_run(Commit(run, table="t", write="append", pages=1)) == 1
    assert rows(store, "SELECT * FROM t") == [(1,)]
    assert not folder.exists()  # the commit's transaction unlisted the file, then it went


def test_closed_without_commit_resumes_from_the_checkpoint(db_path: Path) -> None:
    store = DuckStore(db_path)
    run = new_run(store)
    store.update_run(run, state="running")
    store.stage_batch(run, table(id=[1, 2]), {"next": "/p2"}, 1)
    store.stage_batch(run, table(id=[3]), {"next": "/p3"}, 2)
    store.close()  # the actor died before the commit
    with DuckStore(db_path) as again:
        assert again.staged_run_ids() == [run] and again.staged_rows(run) == 3
        assert again.checkpoint(run) == {"checkpoint": {"next": "/p3"}, "pages": 2, "rows": 3}
        again.stage_batch(run, table(id=[4]), {"next": None}, 3)  # the resumed page
        assert again.commit_run(Commit(run, table="t", write="append", pages=3)) == 4
        assert again.checkpoint(run) is None and again.staged_run_ids() == []
        assert rows(again, "SELECT list(id ORDER BY id) FROM t") == [([1, 2, 3, 4],)]


def test_discard_orphans(store: DuckStore) -> None:
    kept, gone, bare = new_run(store), new_run(store, offset=1), new_run(store, offset=2)
    store.stage_batch(kept, table(id=[1]), {"p": 1}, 1)
    store.stage_batch(gone, table(id=[2]), {"p": 1}, 1)
    store.save_checkpoint(bare, {"p": 1}, 1)  # a checkpoint and no staging
    store.update_run(gone, state="failed")
    store.update_run(bare, state="cancelled")
    still_open = {r["run_id"] for r in store.open_runs()}
    assert store.discard_orphans(still_open) == 2
    assert store.staged_run_ids() == [kept] and store.checkpoint(kept) is not None
    assert store.checkpoint(gone) is None and store.checkpoint(bare) is None
    assert store.discard_orphans(still_open) == 0
    assert store.discard_orphans(set()) == 1
    assert store.staged_run_ids() == [] and store.checkpoint(kept) is None


# -- cursor ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "new", "moves"),
    [
        ("2026-01-02T00:00:00Z", "2026-01-01T23:00:00-02:00", True),  # later, though "smaller"
        ("2026-01-02T00:00:00+00:00", "2026-01-01T23:59:59Z", False),
        ("2026-01-02T00:00:00", "2026-01-01T12:00:00+00:00", False),  # no offset: UTC
        ("2026-01-02", "2026-01-02T00:00:00Z", True),  # equal is not behind
        ("9", "10", True),  # as numbers, not strings
        ("10", "9", False),
        ("1.5", "1.25", False),
        ("1e3", "999", False),
        ("b", "a", False),
        ("a", "b", True),
        ("2026-01-02T00:00:00Z", "later", True),  # one is not a timestamp: as strings
    ],
)
def test_cursor_only_moves_forward(store: DuckStore, stored: str, new: str, moves: bool) -> None:
    first, second = new_run(store), new_run(store, offset=1)
    store.commit_run(Commit(first, table="t", write="append", pages=0, cursor=("orders", stored)))
    store.commit_run(Commit(second, table="t", write="append", pages=0, cursor=("orders", new)))
    assert store.cursor("orders") == (new if moves else stored)
    assert rows(store, "SELECT run_id FROM tg.state") == [(second if moves else first,)]
    assert store.get_run(second)["state"] == "succeeded"  # type: ignore[index]


# -- schema evolution --------------------------------------------------------------------


def commit(store: DuckStore, offset: int, *batches: pa.Table, **kw: Any) -> str:
    """Stage `batches` as one new run and commit it into table w (kw: commit_run's)."""
    run = new_run(store, offset=offset)
    widen = kw.get("widen_to_varchar", False)
    for batch in batches:
        store.stage_batch(run, batch, widen_to_varchar=widen)
    kw = {"table": "w", "write": "append", "pages": len(batches), **kw}
    store.commit_run(Commit(run, **kw))
    return run


def types_of(store: DuckStore, name: str = "w") -> dict[str, str]:
    [found] = [t for t in store.list_tables() if t["name"] == name]
    return {c["name"]: c["type"] for c in found["columns"]}


TZ = pa.timestamp("us", tz="UTC")
NAIVE = datetime(2026, 1, 3, 4, 5)


@pytest.mark.parametrize(
    ("first", "second", "widened", "values"),
    [
        (pa.array([1], pa.int32()), pa.array([2**40]), "BIGINT", [1, 2**40]),
        (pa.array([1]), pa.array([2.5]), "DOUBLE", [1.0, 2.5]),
        (pa.array([1], pa.int32()), pa.array([2.5]), "DOUBLE", [1.0, 2.5]),
        (pa.array([1.5], pa.float32()), pa.array([3]), "DOUBLE", [1.5, 3.0]),
        (
            pa.array([7]),
            pa.array([Decimal("1.25")], pa.decimal128(10, 2)),
            "DECIMAL(21,2)",
            [Decimal(7), Decimal("1.25")],
        ),
        (
            pa.array([Decimal("1.25")], pa.decimal128(10, 2)),
            pa.array([7], pa.int32()),
            "DECIMAL(12,2)",
            [Decimal("1.25"), Decimal(7)],
        ),
        (pa.array([Decimal("1.25")], pa.decimal128(10, 2)), pa.array([0.5]), "DOUBLE", [1.25, 0.5]),
        (
            pa.array([date(2026, 1, 2)]),
            pa.array([NAIVE]),
            "TIMESTAMP",
            [datetime(2026, 1, 2), NAIVE],
        ),
        (
            pa.array([date(2026, 1, 2)]),
            pa.array([T0], TZ),
            "TIMESTAMP WITH TIME ZONE",
            [datetime(2026, 1, 2, tzinfo=UTC), T0],
        ),
        (
            pa.array([{"a": 1}]),
            pa.array([{"b": "x", "a": 2}]),
            "STRUCT(a BIGINT, b VARCHAR)",
            [{"a": 1, "b": None}, {"a": 2, "b": "x"}],
        ),
        (
            pa.array([{"a": 1, "s": {"x": 1}}]),
            pa.array([{"s": {"x": 2.5, "y": True}}]),
            "STRUCT(a BIGINT, s STRUCT(x DOUBLE, y BOOLEAN))",
            [{"a": 1, "s": {"x": 1.0, "y": None}}, {"a": None, "s": {"x": 2.5, "y": True}}],
        ),
        (pa.array([[1]]), pa.array([[2.5]]), "DOUBLE[]", [[1.0], [2.5]]),
        (pa.array([[]], pa.list_(pa.null())), pa.array([["x"]]), "VARCHAR[]", [[], ["x"]]),
    ],
)
def test_compatible_types_widen(
    store: DuckStore, first: pa.Array, second: pa.Array, widened: str, values: list[Any]
) -> None:
    one_then_two = [pa.table({"id": [1], "v": first}), pa.table({"id": [2], "v": second})]
    # across runs: the table's column is altered in place, its values kept
    commit(store, 0, one_then_two[0])
    commit(store, 1, one_then_two[1])
    assert types_of(store)["v"] == widened
    assert rows(store, "SELECT v FROM w ORDER BY id") == [(v,) for v in values]
    # within a run, between batches: the staging widens the same way
    commit(store, 2, *one_then_two, table="r")
    assert types_of(store, "r")["v"] == widened
    assert rows(store, "SELECT v FROM r ORDER BY id") == [(v,) for v in values]


@pytest.mark.parametrize(
    ("first", "second", "old", "new"),
    [
        (pa.array([1.5]), pa.array(["n/a"]), "DOUBLE", "VARCHAR"),
        (pa.array(["x"]), pa.array([5]), "VARCHAR", "BIGINT"),
        (pa.array([1]), pa.array([True]), "BIGINT", "BOOLEAN"),
        (pa.array([date(2026, 1, 1)]), pa.array([5]), "DATE", "BIGINT"),
        (pa.array([NAIVE]), pa.array([T0], TZ), "TIMESTAMP", "TIMESTAMP WITH TIME ZONE"),
        (pa.array([{"a": 1}]), pa.array([5]), "STRUCT(a BIGINT)", "BIGINT"),
        (pa.array([{"a": 1}]), pa.array([{"a": "x"}]), "STRUCT(a BIGINT)", "STRUCT(a VARCHAR)"),
        (pa.array([[1]]), pa.array([["x"]]), "BIGINT[]", "VARCHAR[]"),
    ],
)
def test_incompatible_type_fails_and_changes_nothing(
    store: DuckStore, first: pa.Array, second: pa.Array, old: str, new: str
) -> None:
    commit(store, 0, pa.table({"id": [1], "v": first}), cursor=("orders", "5"))
    run = new_run(store, offset=1)
    store.update_run(run, state="running")
    store.stage_batch(run, pa.table({"id": [2], "v": second, "extra": [1]}), {"page": 2}, 1)
    hint = "; set destination.widen_to_varchar: true to store it as VARCHAR"
    with pytest.raises(DestinationError) as info:
        store.commit_run(Commit(run, table="w", write="append", pages=1, cursor=("orders", "6")))
    assert (
        str(info.value)
        == f"table w: column v is {old} in the table but {new} in the new rows{hint}"
    )
    assert types_of(store) == {"id": "BIGINT", "v": old}  # not altered, no column extra
    assert rows(store, "SELECT count(*) FROM w") == [(1,)]
    assert store.cursor("orders") == "5"
    after = store.get_run(run)
    assert after is not None and (after["state"], after["rows_loaded"]) == ("running", 0)
    assert store.staged_rows(run) == 1 and store.checkpoint(run) is not None

    # within one run: the batch that changes the type is refused, the earlier ones kept
    other = new_run(store, offset=2)
    store.stage_batch(other, pa.table({"id": [3], "v": first}), {"page": 2}, 1)
    with pytest.raises(DestinationError) as info:
        store.stage_batch(
            other, pa.table({"id": [4], "v": second}), {"page": 3}, 2, destination="w"
        )
    assert str(info.value) == (
        f"table w (run {other}): column v is {old} in the run's earlier batches"
        f" but {new} in this batch{hint}"
    )
    assert store.staged_rows(other) == 1
    assert store.checkpoint(other) == {"checkpoint": {"page": 2}, "pages": 1, "rows": 1}


def test_widen_to_varchar(store: DuckStore) -> None:
    first = {"id": [1, 2], "amount": [1.5, 2.0], "info": [{"a": 1}, None], "n": [1, 2]}
    commit(store, 0, pa.table(first))
    # between batches: amount text then numbers, info a number then a STRUCT
    commit(
        store,
        1,
        pa.table({"id": [3], "amount": ["n/a"], "info": [5], "n": [2.5]}),
        pa.table({"id": [4], "amount": [7], "info": [{"b": "x"}], "n": [3]}),
        widen_to_varchar=True,
    )
    # n only widened (BIGINT -> DOUBLE); amount's doubles and info's STRUCTs became text
    assert types_of(store) == {
        "id": "BIGINT",
        "amount": "VARCHAR",
        "info": "VARCHAR",
        "n": "DOUBLE",
    }
    assert rows(store, "SELECT * FROM w ORDER BY id") == [
        (1, "1.5", '{"a":1}', 1.0), (2, "2.0", None, 2.0),
        (3, "n/a", "5", 2.5), (4, "7", '{"b":"x"}', 3.0),
    ]  # fmt: skip
    # later numbers go into the VARCHAR column as text; without the flag they fail
    commit(store, 2, pa.table({"id": [5], "amount": [8.25]}), widen_to_varchar=True)
    assert rows(store, "SELECT amount FROM w WHERE id = 5") == [("8.25",)]
    with pytest.raises(DestinationError, match="amount is VARCHAR in the table but DOUBLE"):
        commit(store, 3, pa.table({"id": [6], "amount": [9.5]}))


def test_widen_to_varchar_with_merge_on_the_key(store: DuckStore) -> None:
    merge: dict[str, Any] = {"table": "m", "write": "merge", "primary_key": ["id"]}
    commit(store, 0, pa.table({"id": [1, 2], "v": ["a", "b"]}), **merge)
    # the key itself turns to text: existing keys match their text form
    commit(
        store, 1, pa.table({"id": ["1", "A1"], "v": ["a2", "z"]}), widen_to_varchar=True, **merge
    )
    assert types_of(store, "m") == {"id": "VARCHAR", "v": "VARCHAR"}
    assert rows(store, "SELECT id, v FROM m ORDER BY id") == [("1", "a2"), ("2", "b"), ("A1", "z")]


def test_attempt_fences_off_a_superseded_engine(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    import pyarrow as pa

    from tg_actors.errors import StaleAttempt
    from tg_actors.store.duckdb import DuckStore

    store = DuckStore(tmp_path / "fence.duckdb")
    run_id = store.create_run("job", datetime(2026, 1, 1, tzinfo=UTC), "manual")
    assert run_id is not None
    batch = pa.table({"id": [1, 2]})
    store.stage_batch(run_id, batch, {"p": 1}, 1, attempt=1)
    store.update_run(run_id, attempt=2)  # the scheduler re-dispatched the run
    with pytest.raises(StaleAttempt, match="attempt 1 was superseded by attempt 2"):
        store.stage_batch(run_id, batch, {"p": 2}, 2, attempt=1)
    with pytest.raises(StaleAttempt):
        store.save_checkpoint(run_id, {"p": 2}, 2, attempt=1)
    with pytest.raises(StaleAttempt):
        store.commit_run(Commit(run_id, table="t", write="append", pages=2, attempt=1))
    assert store.checkpoint(run_id) == {"checkpoint": {"p": 1}, "pages": 1, "rows": 2}
    assert store.commit_run(Commit(run_id, table="t", write="append", pages=2, attempt=2)) == 2
    store.close()


def test_conditional_update_never_overwrites_a_newer_state(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    import pyarrow as pa

    from tg_actors.errors import IllegalTransition
    from tg_actors.store.duckdb import DuckStore

    store = DuckStore(tmp_path / "late.duckdb")
    run_id = store.create_run("job", datetime(2026, 1, 1, tzinfo=UTC), "manual")
    assert run_id is not None
    store.stage_batch(run_id, pa.table({"id": [1]}))
    store.commit_run(Commit(run_id, table="t", write="append", pages=1))  # the engine was quicker
    # the scheduler's late "queued -> running" must not turn the run back into running
    with pytest.raises(IllegalTransition, match="'succeeded'"):
        store.update_run(run_id, expect_state="queued", state="running")
    assert store.get_run(run_id)["state"] == "succeeded"  # type: ignore[index]
    assert store.cancel_run(run_id) is False  # an ended run cannot be cancelled either
    store.close()


def test_create_runs_in_one_statement_skips_existing_ticks(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from tg_actors.store.duckdb import DuckStore

    store = DuckStore(tmp_path / "many.duckdb")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first = store.create_run("a", t0, "schedule")
    ids = store.create_runs(
        [
            {"job": "a", "scheduled_for": t0, "trigger": "schedule"},  # exists already
            {"job": "b", "scheduled_for": t0, "trigger": "schedule", "priority": 70},
            {"job": "a", "scheduled_for": t0 + timedelta(seconds=1), "trigger": "catchup",
             "state": "skipped"},
        ]
    )  # fmt: skip
    assert ids[0] is None and ids[1] and ids[2] and first
    b = store.get_run(ids[1])
    assert b is not None and b["priority"] == 70 and b["state"] == "queued"
    assert b["scheduled_for"] == t0 and b["attempt"] == 1
    assert store.get_run(ids[2])["state"] == "skipped"  # type: ignore[index]
    assert store.create_runs([]) == []
    store.close()


def test_last_runs_gives_each_jobs_newest_run_in_one_query(tmp_path: Path) -> None:
    with DuckStore(tmp_path / "last.duckdb") as store:
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        ids = {}
        for job in ("a", "b"):
            for i in range(3):
                ids[job, i] = store.create_run(job, t0 + timedelta(minutes=i), "schedule")
        last = store.last_runs()
        assert set(last) == {"a", "b"}
        for job in ("a", "b"):
            assert last[job] == store.list_runs(job=job, limit=1)[0]
