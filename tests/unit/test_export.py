"""Export files on real DuckDB files: `destination.export` in the job model and the Commit
record, write_table (the rows of a direct DuckDB read, written aside and renamed: a reader sees
the old complete file or the new one; a failed write leaves the previous file), the Exporter
(one table at a time, a burst coalesced, the newest commit always in the file) and the Database
actor class committing runs whose job exports (no Ray)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from tg_actors.attempts import Commit
from tg_actors.errors import JobValidationError, TableNotFound
from tg_actors.jobs import ExportFormat, parse_job
from tg_actors.store.export import Exporter, export_path, format_of, write_table

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def job(**destination: Any) -> dict[str, Any]:
    return {
        "name": "orders",
        "source": {"url": "http://127.0.0.1:9/"},
        "destination": {"table": "orders"} | destination,
    }


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    (tmp_path / "data").mkdir()
    c = duckdb.connect(str(tmp_path / "data" / "x.duckdb"))
    c.execute("SET TimeZone = 'UTC'")
    yield c
    c.close()


def fill(con: duckdb.DuckDBPyConnection, table: str, n: int, tag: str = "a") -> None:
    con.execute(
        f"CREATE OR REPLACE TABLE {table} AS SELECT range AS id, '{tag}' || range AS name,"
        " range * 0.5 AS amount, TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(range) AS at,"
        " CASE WHEN range % 3 = 0 THEN NULL ELSE [range, range + 1] END AS tags"
        f" FROM range({n})"
    )


def read_back(path: Path) -> pa.Table:
    return pq.read_table(path)


# -- the job model and the Commit record --------------------------------------------------


def test_destination_export_parquet_is_parsed_and_stored() -> None:
    spec = parse_job(job(export="parquet"))
    assert spec.destination.export is ExportFormat.PARQUET
    assert spec.to_stored()["destination"]["export"] == "parquet"


def test_destination_export_absent_means_no_export_and_is_not_stored() -> None:
    spec = parse_job(job())
    assert spec.destination.export is None
    assert "export" not in spec.to_stored()["destination"]


@pytest.mark.parametrize("value", ["csv", "PARQUET ", 1, True, {"format": "parquet"}])
def test_a_wrong_export_is_an_error_naming_destination_export(value: Any) -> None:
    with pytest.raises(JobValidationError) as caught:
        parse_job(job(export=value), "orders.yaml")
    assert [loc for loc, _ in caught.value.errors] == ["destination.export"]
    assert "parquet" in caught.value.errors[0][1]


def test_the_commit_record_carries_the_export_checked() -> None:
    commit = Commit("r", table="t", write="append", pages=0, export="parquet")  # type: ignore[arg-type]
    assert commit.export is ExportFormat.PARQUET
    assert Commit("r", table="t", write="append", pages=0).export is None
    with pytest.raises(ValueError, match=r"Commit\.export must be one of parquet or None"):
        Commit("r", table="t", write="append", pages=0, export="csv")  # type: ignore[arg-type]


# -- write_table ---------------------------------------------------------------------------


def test_the_file_holds_the_rows_of_a_direct_duckdb_read(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    fill(con, "orders", 10_000)
    target = export_path(tmp_path / "data" / "x.duckdb", "orders")
    assert target == tmp_path / "data" / "exports" / "orders.parquet"
    assert write_table(con.cursor(), "orders", target, batch_rows=1000) == 10_000
    direct = con.sql("SELECT * FROM orders ORDER BY id").to_arrow_table()
    written = read_back(target)
    assert written.column_names == direct.column_names
    assert [f.type for f in written.schema][:3] == [f.type for f in direct.schema][:3]
    assert written.sort_by("id").to_pylist() == direct.to_pylist()
    assert pq.ParquetFile(target).metadata.num_row_groups > 1  # streamed in batches
    assert sorted(p.name for p in target.parent.iterdir()) == ["orders.parquet"]


def test_csv_by_the_same_path(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    fill(con, "orders", 50)
    target = tmp_path / "out" / "orders.csv"
    assert format_of(target) == "csv"
    assert write_table(con, "orders", target, fmt="csv") == 50
    back = pa_csv.read_csv(target).sort_by("id")
    assert back.column_names == ["id", "name", "amount", "at", "tags"]
    assert back.column("id").to_pylist() == list(range(50))
    assert back.column("name").to_pylist() == [f"a{i}" for i in range(50)]
    assert back.column("tags").to_pylist()[:3] == ["", "[1, 2]", "[2, 3]"]  # lists as text


def test_an_empty_table_gives_a_file_with_its_columns(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    fill(con, "orders", 0)
    target = tmp_path / "orders.parquet"
    assert write_table(con, "orders", target) == 0
    back = read_back(target)
    assert back.num_rows == 0 and back.column_names == ["id", "name", "amount", "at", "tags"]


def test_format_by_suffix() -> None:
    assert format_of(Path("a/b.parquet")) == "parquet"
    assert format_of(Path("B.PARQUET")) == "parquet"
    with pytest.raises(ValueError, match=r"unknown file type '\.json'; use \.parquet, \.csv"):
        format_of(Path("x.json"))


def test_an_unknown_table_writes_nothing(con: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    with pytest.raises(TableNotFound):
        write_table(con, "nope", tmp_path / "e" / "nope.parquet")
    con.execute("CREATE SCHEMA other; CREATE TABLE other.hidden AS SELECT 1 AS x")
    with pytest.raises(TableNotFound):  # only the data tables of schema main
        write_table(con, "hidden", tmp_path / "e" / "hidden.parquet")
    assert not (tmp_path / "e").exists()


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    target = tmp_path / "exports" / "t.parquet"
    con.execute("CREATE TABLE t AS SELECT range AS id FROM range(5)")
    write_table(con, "t", target)
    before = target.read_bytes()
    # a column Parquet cannot hold: the writer fails once the temporary file exists
    con.execute("DROP TABLE t")
    con.execute("CREATE TABLE t (u UNION(a INTEGER, b VARCHAR))")
    con.execute("INSERT INTO t VALUES (1::INTEGER), ('x')")
    with pytest.raises(pa.ArrowException):
        write_table(con, "t", target)
    assert target.read_bytes() == before
    assert read_back(target).column("id").to_pylist() == [0, 1, 2, 3, 4]
    assert [p.name for p in target.parent.iterdir()] == ["t.parquet"]


def test_a_reader_sees_the_old_complete_file_or_the_new_one(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    target = tmp_path / "exports" / "big.parquet"
    sizes = [200_000, 120_000, 260_000, 150_000]
    fill(con, "big", sizes[0])
    write_table(con, "big", target)
    seen: set[int] = set()
    names: set[str] = set()
    stop = threading.Event()
    failures: list[BaseException] = []

    def reader() -> None:
        for attempt in itertools.count():
            if stop.is_set():
                return
            try:
                names.update(p.name for p in target.parent.iterdir())
                # each read opens the file once and reads all from that handle: given the
                # path, pyarrow's read_table and polars' read_parquet open it more than once
                # (the footer, then the rows) and mixed an old footer with new rows in CI
                with target.open("rb") as f:
                    if attempt % 2:
                        ids = pl.read_parquet(f)["id"].to_list()
                    else:
                        ids = pq.read_table(f).column("id").to_pylist()
                assert ids == list(range(len(ids)))
                seen.add(len(ids))
            except BaseException as exc:  # reported after the join
                failures.append(exc)
                return

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in sizes[1:]:
            fill(con, "big", n)
            write_table(con.cursor(), "big", target, batch_rows=4096)
    finally:
        stop.set()
        thread.join(30)
    assert not failures, failures
    assert seen <= set(sizes), seen  # whole files only, never part of one
    temporaries = names - {"big.parquet"}
    assert all(n.startswith(".big.parquet.") and n.endswith(".tmp") for n in temporaries)
    assert [p.name for p in target.parent.iterdir()] == ["big.parquet"]
    assert read_back(target).num_rows == sizes[-1]


# -- the Exporter ----------------------------------------------------------------------------


class Reports:
    """The exporter's report callback; `hold` keeps its thread in the first report until the
    test lets it go (an export under way while commits arrive)."""

    def __init__(self, hold: bool = False) -> None:
        self.items: list[tuple[list[str], str, str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, runs: list[str], level: str, message: str) -> None:
        self.items.append((runs, level, message))
        self.entered.set()
        assert self.release.wait(30)


def test_commits_during_an_export_coalesce_into_one_more_that_reads_them_all(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    fill(con, "orders", 10)
    reports = Reports(hold=True)
    exporter = Exporter(con.cursor(), tmp_path / "exports", reports)
    try:
        exporter.request("orders", "r1")
        assert reports.entered.wait(30)  # r1's export written, its thread held
        for n, run in ((20, "r2"), (30, "r3"), (40, "r4")):
            fill(con, "orders", n)  # committed on the writer's connection meanwhile
            exporter.request("orders", run)
        reports.release.set()
        assert exporter.wait_idle(30)
    finally:
        exporter.close()
    assert [(runs, level) for runs, level, _ in reports.items] == [
        (["r1"], "INFO"),
        (["r2", "r3", "r4"], "INFO"),
    ]
    assert reports.items[1][2] == (
        f"exported 40 rows of orders to {tmp_path / 'exports' / 'orders.parquet'}"
    )
    assert exporter.exports == 2
    assert read_back(tmp_path / "exports" / "orders.parquet").num_rows == 40


def test_a_failed_export_is_reported_and_the_next_one_works(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    reports = Reports()
    exporter = Exporter(con.cursor(), tmp_path / "exports", reports)
    try:
        exporter.request("missing", "r1")
        fill(con, "orders", 3)
        exporter.request("orders", "r2")
        assert exporter.wait_idle(30)
    finally:
        exporter.close()
    (failed, _, message), (ok, level, _) = reports.items
    assert failed == ["r1"] and message.startswith("export of missing to ")
    assert "TableNotFound" in message and message.endswith("the previous file is left in place")
    assert ok == ["r2"] and level == "INFO"
    assert read_back(tmp_path / "exports" / "orders.parquet").num_rows == 3


def test_close_drops_what_is_pending_and_closes_the_cursor(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    fill(con, "orders", 3)
    cursor = con.cursor()
    reports = Reports(hold=True)
    exporter = Exporter(cursor, tmp_path / "exports", reports)
    exporter.request("orders", "r1")
    assert reports.entered.wait(30)
    exporter.request("orders", "r2")
    reports.release.set()
    exporter.close()
    exporter.close()  # twice is fine
    exporter.request("orders", "r3")  # after close: ignored
    assert [runs for runs, _, _ in reports.items] == [["r1"]]
    with pytest.raises(duckdb.ConnectionException):
        cursor.execute("SELECT 1")


# -- the Database actor class (no Ray): commits whose job exports ---------------------------


def running_run(db_path: Path, job: str, minute: int) -> str:
    from tg_actors.store.duckdb import DuckStore

    with DuckStore(db_path) as store:
        run_id = store.create_run(job, T0 + timedelta(minutes=minute), "manual")
        assert run_id is not None
        store.update_run(run_id, state="running")
    return run_id


def commit(run_id: str, ids: list[int], **kw: Any) -> Commit:
    batch = pa.table({"id": pa.array(ids, pa.int64())})
    return Commit(run_id, table="orders", write="append", pages=1, batch=batch, **kw)


async def test_the_database_exports_after_each_commit_of_an_exporting_job(
    tmp_path: Path,
) -> None:
    from tg_actors.store.actor import Database

    path = tmp_path / "data" / "db.duckdb"
    first, second, plain = (running_run(path, "orders", m) for m in range(3))
    target = tmp_path / "data" / "exports" / "orders.parquet"
    db = Database(str(path), housekeeping_seconds=3600.0)
    try:
        assert await db.commit_run(commit(plain, [0])) == 1  # no export asked: no file
        assert await db.wait_exports(30)
        assert not target.parent.exists()
        assert await db.commit_run(commit(first, [1, 2], export=ExportFormat.PARQUET)) == 2
        assert await db.wait_exports(30)
        assert sorted(read_back(target).column("id").to_pylist()) == [0, 1, 2]
        assert await db.commit_run(commit(second, [3], export=ExportFormat.PARQUET)) == 1
        assert await db.wait_exports(30)
        assert sorted(read_back(target).column("id").to_pylist()) == [0, 1, 2, 3]
        logs = [(e["level"], e["message"]) for e in await db.get_logs(second)]
        assert ("INFO", f"exported 4 rows of orders to {target}") in logs
        assert await db.get_logs(plain) == []
    finally:
        await db.close()
    with duckdb.connect(str(path), read_only=True) as check:  # closed cleanly, cursor and all
        assert check.execute("SELECT count(*) FROM orders").fetchone() == (4,)


async def test_a_failed_export_is_a_warning_and_the_commit_stands(tmp_path: Path) -> None:
    from tg_actors.store.actor import Database

    path = tmp_path / "data" / "db.duckdb"
    run_id = running_run(path, "orders", 0)
    blocked = tmp_path / "data" / "exports" / "orders.parquet"
    (blocked / "inside").mkdir(parents=True)  # a folder where the file would go
    db = Database(str(path), housekeeping_seconds=3600.0)
    try:
        assert await db.commit_run(commit(run_id, [1, 2, 3], export=ExportFormat.PARQUET)) == 3
        assert await db.wait_exports(30)
        run = await db.get_run(run_id)
        assert run is not None and run["state"] == "succeeded" and run["rows_loaded"] == 3
        assert await db.query("SELECT count(*) FROM orders") == [(3,)]
        warnings = [e["message"] for e in await db.get_logs(run_id) if e["level"] == "WARNING"]
        assert len(warnings) == 1 and warnings[0].startswith(f"export of orders to {blocked}")
        assert (blocked / "inside").is_dir()  # what was there is left in place
        assert [p.name for p in blocked.parent.iterdir()] == ["orders.parquet"]
    finally:
        await db.close()
