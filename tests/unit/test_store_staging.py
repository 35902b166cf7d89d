"""Staged batches as Arrow IPC files (store/staging.py): listed with their checkpoint, read
once at commit, removed only after the transaction that unlisted them, swept after a crash."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.kit.stepclock import T0, Clock
from tg_actors.attempts import Commit
from tg_actors.errors import DestinationError
from tg_actors.jobtrust import RowCountCheck
from tg_actors.store.duckdb import DuckStore
from tg_actors.store.staging import Mapped, Staging


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "warehouse.duckdb"


@pytest.fixture
def store(db_path: Path) -> Iterator[DuckStore]:
    with DuckStore(db_path, clock=Clock()) as opened:
        yield opened


def new_run(store: DuckStore, minute: int = 1) -> str:
    run_id = store.create_run("orders", T0 + timedelta(minutes=minute), "schedule")
    assert run_id is not None
    return run_id


def folder(db_path: Path, run_id: str) -> Path:
    return db_path.with_name(db_path.name + ".staging") / run_id


def files(db_path: Path, run_id: str) -> list[str]:
    return sorted(p.name for p in folder(db_path, run_id).iterdir())


def listed(store: DuckStore, run_id: str) -> list[tuple[Any, ...]]:
    return store.con.execute(
        "SELECT first_seq, rows, file FROM tg.staged_batches WHERE run_id = ? ORDER BY 1",
        [run_id],
    ).fetchall()


def rows(store: DuckStore, sql: str) -> list[tuple[Any, ...]]:
    return store.con.execute(sql).fetchall()


def test_each_batch_is_a_file_listed_with_its_checkpoint_and_the_commit_removes_them(
    store: DuckStore, db_path: Path
) -> None:
    run = new_run(store)
    assert store.stage_batch(run, pa.table({"id": [1, 2]}), {"page": 2}, 1) == 2
    assert store.stage_batch(run, pa.table({"id": [3]}), {"page": 3}, 2) == 3
    assert files(db_path, run) == ["000000000000.arrow", "000000000002.arrow"]
    assert listed(store, run) == [
        (0, 2, f"{run}/000000000000.arrow"),
        (2, 1, f"{run}/000000000002.arrow"),
    ]
    assert rows(store, f'SELECT count(*) FROM tg."stage_{run}"') == [(0,)]  # columns only
    assert store.checkpoint(run) == {"checkpoint": {"page": 3}, "pages": 2, "rows": 3}
    assert store.commit_run(Commit(run, table="t", write="append", pages=2)) == 3
    assert rows(store, "SELECT list(id ORDER BY id) FROM t") == [([1, 2, 3],)]
    assert listed(store, run) == [] and not folder(db_path, run).exists()


def test_files_nothing_lists_are_never_read_and_go_when_the_store_opens(db_path: Path) -> None:
    store = DuckStore(db_path, clock=Clock())
    run = new_run(store)
    store.stage_batch(run, pa.table({"id": [1]}), {"page": 2}, 1)
    store.close()
    # a crash after writing a file and before the transaction listing it committed, once
    # between the write and the rename; and the folder of a run whose commit went through
    staging = Staging(str(db_path))
    staging.write(run, 1, pa.table({"id": [99], "__tg_seq": pa.array([1], pa.int64())}))
    (folder(db_path, run) / "000000000002.arrow.partial").write_bytes(b"half a file")
    staging.write("f" * 32, 0, pa.table({"id": [7]}))
    assert len(files(db_path, run)) == 3
    with DuckStore(db_path, clock=Clock()) as again:
        assert files(db_path, run) == ["000000000000.arrow"]
        assert not folder(db_path, "f" * 32).exists()
        assert again.staged_rows(run) == 1
        again.stage_batch(run, pa.table({"id": [2]}), {"page": 3}, 2)
        assert again.commit_run(Commit(run, table="t", write="append", pages=2)) == 2
        assert rows(again, "SELECT list(id ORDER BY id) FROM t") == [([1, 2],)]


def test_a_commit_that_rolls_back_keeps_the_files_and_a_retry_commits_them(
    store: DuckStore, db_path: Path
) -> None:
    store.con.execute("CREATE TABLE main.t AS SELECT {'a': 1} AS id")
    run = new_run(store)
    store.stage_batch(run, pa.table({"id": [1, 2]}), {"page": 2}, 1)
    with pytest.raises(DestinationError, match="column id is STRUCT"):
        store.commit_run(Commit(run, table="t", write="append", pages=1))
    assert files(db_path, run) == ["000000000000.arrow"] and store.staged_rows(run) == 2
    retry = Commit(run, table="t", write="append", pages=1, widen_to_varchar=True)
    assert store.commit_run(retry) == 2
    assert rows(store, "SELECT id FROM t ORDER BY id") == [("1",), ("2",), ('{"a":1}',)]
    assert not folder(db_path, run).exists()


def test_columns_that_widened_between_files_are_cast_to_the_runs_columns(
    store: DuckStore,
) -> None:
    run = new_run(store)
    first = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),
            "s": pa.array([{"a": 1}, {"a": 2}]),
            "v": pa.array([10, 20], pa.int64()),
        }
    )
    later = pa.table(
        {
            "id": pa.array([2, 3], pa.int64()),
            "s": pa.array([{"a": 5, "b": "x"}, {"a": 3, "b": "y"}]),
            "v": pa.array([{"k": 1}, {"k": 2}]),  # incompatible: becomes text
            "note": ["late", "column"],
        }
    )
    store.stage_batch(run, first, widen_to_varchar=True)
    store.stage_batch(run, later, widen_to_varchar=True)
    last = pa.table({"id": pa.array([3], pa.int64()), "note": ["the commit's batch"]})
    merge = Commit(
        run,
        table="t",
        write="merge",
        primary_key=("id",),
        pages=3,
        batch=last,
        widen_to_varchar=True,
    )
    assert store.commit_run(merge) == 3
    assert rows(store, "SELECT column_name, column_type FROM (DESCRIBE t)") == [
        ("id", "BIGINT"),
        ("s", "STRUCT(a BIGINT, b VARCHAR)"),
        ("v", "VARCHAR"),
        ("note", "VARCHAR"),
    ]
    assert rows(store, "SELECT * FROM t ORDER BY id") == [  # the last staged row per key
        (1, {"a": 1, "b": None}, "10", None),
        (2, {"a": 5, "b": "x"}, '{"k":1}', "late"),
        (3, None, None, "the commit's batch"),
    ]


def test_rows_in_the_stage_table_itself_commit_with_the_files(store: DuckStore) -> None:
    """A run staged by a version that wrote its rows into the stage table goes on after the
    upgrade: those rows come first, the files after them."""
    run = new_run(store)
    store.con.execute(
        f'CREATE TABLE tg."stage_{run}" AS SELECT 1::BIGINT AS id, 0::BIGINT AS __tg_seq'
    )
    assert store.staged_rows(run) == 1
    assert store.stage_batch(run, pa.table({"id": [2]}), {"page": 2}, 2) == 2
    assert listed(store, run)[0][:2] == (1, 1)
    assert store.commit_run(Commit(run, table="t", write="append", pages=2)) == 2
    assert rows(store, "SELECT list(id ORDER BY id) FROM t") == [([1, 2],)]


def test_discarding_a_run_removes_its_files_after_the_transaction(
    store: DuckStore, db_path: Path
) -> None:
    run = new_run(store)
    store.stage_batch(run, pa.table({"id": [1]}), {"page": 2}, 1)
    store.discard_run(run)
    assert store.staged_rows(run) == 0 and not folder(db_path, run).exists()


def test_an_in_memory_store_keeps_its_files_in_a_folder_it_removes_on_close() -> None:
    store = DuckStore(":memory:", clock=Clock())
    run = new_run(store)
    store.stage_batch(run, pa.table({"id": [1]}))
    (root,) = {Path(row[0]).parent for row in rows(store, "SELECT file FROM tg.staged_batches")}
    where = Path(store._staging.root)  # noqa: SLF001 - the temporary folder has no other name
    assert (where / root).is_dir()
    store.close()
    assert not where.exists()


@pytest.mark.parametrize("write", ["append", "merge"])
def test_a_commit_writes_the_files_one_by_one_giving_each_ones_pages_back(
    store: DuckStore, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    """The Database's memory does not grow with the run: each file is mapped once and its
    pages go back (Staging.release) once its part is written, before the next part is."""
    events: list[str] = []
    mapping, release = Staging.map, Mapped.release

    def mapped(self: Staging, name: str) -> Mapped:
        events.append(f"map {name.split('/')[1]}")
        return mapping(self, name)

    def releasing(self: Mapped) -> None:
        events.append("release")
        release(self)

    monkeypatch.setattr(Staging, "map", mapped)
    monkeypatch.setattr(Mapped, "release", releasing)
    run = new_run(store)
    for page in range(3):  # key 5 in every file: its last row (page 2's) wins
        batch = pa.table({"id": [page, 5], "v": [f"p{page}", f"five from page {page}"]})
        store.stage_batch(run, batch, {"page": page + 2}, page + 1)
    commit = Commit(run, table="t", write=write, primary_key=("id",), pages=3)
    assert store.commit_run(commit) == (6 if write == "append" else 4)
    maps = [f"map {first:012d}.arrow" for first in (0, 2, 4)]
    assert events == maps + ["release"] * 3 + ["release"] * 3  # after each part; at the end
    expected = [(0, "p0"), (1, "p1"), (2, "p2")]
    fives = [(5, f"five from page {p}") for p in range(3)] if write == "append" else []
    last = [] if write == "append" else [(5, "five from page 2")]
    assert rows(store, "SELECT id, v FROM t ORDER BY id, v") == expected + fives + last


def test_a_piecewise_merge_counts_and_writes_what_one_merge_would(store: DuckStore) -> None:
    """Keys spread over files and already in the table: each is updated once, from its last
    staged row, and counted once; a check (which reads all the rows) takes the one MERGE."""
    store.con.execute(
        "CREATE TABLE main.t AS SELECT * FROM (VALUES (1, 'old'), (9, 'kept')) v(id, v)"
    )
    results = []
    for minute, checks in enumerate([(), (RowCountCheck(type="row_count", min=1),)], 1):
        run = new_run(store, minute)
        store.stage_batch(run, pa.table({"id": [1, 2], "v": ["a", "b"]}), {"page": 2}, 1)
        store.stage_batch(run, pa.table({"id": [2, 3], "v": ["c", "d"]}), {"page": 3}, 2)
        commit = Commit(run, table="t", write="merge", primary_key=("id",), pages=2, checks=checks)
        results.append(store.commit_run(commit))
        assert rows(store, "SELECT id, v FROM t ORDER BY id") == [
            (1, "a"),
            (2, "c"),
            (3, "d"),
            (9, "kept"),
        ]
    assert results == [3, 3]


def test_a_listed_file_gone_fails_the_commit_naming_it_and_commits_nothing(
    store: DuckStore, db_path: Path
) -> None:
    run = new_run(store)
    store.stage_batch(run, pa.table({"id": [1]}), {"page": 2}, 1)
    store.stage_batch(run, pa.table({"id": [2]}), {"page": 3}, 2)
    (folder(db_path, run) / "000000000001.arrow").unlink()  # deleted by hand
    with pytest.raises(DestinationError, match=r"staged file .*000000000001\.arrow cannot be read"):
        store.commit_run(Commit(run, table="t", write="append", pages=2))
    assert store.list_tables() == [] and store.staged_rows(run) == 2
    assert store.get_run(run)["state"] == "queued"  # type: ignore[index]


def test_mapping_a_file_keeps_no_file_descriptor_and_its_pages_can_go_back(
    tmp_path: Path,
) -> None:
    staging = Staging(str(tmp_path / "warehouse.duckdb"))
    names = [staging.write("r" * 32, i, pa.table({"id": [i] * 1000})) for i in range(50)]
    before = len(list(Path("/proc/self/fd").iterdir()))
    mapped = [staging.map(name) for name in names]
    assert len(list(Path("/proc/self/fd").iterdir())) == before  # thousands of files fit
    for m in mapped:
        m.release()  # the pages go; the rows are read again from the file
    assert [m.table.column("id")[0].as_py() for m in mapped] == list(range(50))
