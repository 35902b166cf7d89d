"""The read path on real DuckDB files (store/reader.py, store/readonly.py, no Ray): answers
equal a direct DuckDB read, refused statements change nothing, the locked-down database stops
files and URLs even past the parser, tg.jobs shows secrets masked, queries are interrupted at
their timeout and limited in number, and a query during a 200k-row merge sees the old rows or
the new ones, never a mix."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tg_actors.attempts import Commit
from tg_actors.errors import QueryFailed, QueryRefused, QueryTimeout, TooManyQueries
from tg_actors.jobs import parse_job
from tg_actors.redaction import mask_value
from tg_actors.settings import Settings
from tg_actors.store import reader as reader_module
from tg_actors.store.duckdb import DuckStore
from tg_actors.store.reader import Reader, SqlLimits
from tg_actors.store.readonly import MASK_SPEC_SQL, lock_down, open_read
from tg_actors.store.schema import jsonable

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TYPES_SQL = (
    "CREATE TABLE orders AS SELECT range AS id, 'n' || range AS name, range * 0.25 AS amount,"
    " (range * 1.5)::DECIMAL(10, 2) AS price, range % 2 = 0 AS even,"
    " TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_seconds(range) AS ts, DATE '2026-01-01' + "
    "range::INT AS day, CASE WHEN range % 3 = 0 THEN NULL ELSE [range, range + 1] END AS tags,"
    " {'k': range, 'v': 'x' || range} AS kv, INTERVAL (range) MINUTE AS wait,"
    " ('\\x' || lpad(range::VARCHAR, 2, '0'))::BLOB AS raw FROM range(1000)"
)
SHOP_JOB = {
    "name": "shop",
    "source": {
        "url": "http://127.0.0.1:9/orders?key=${SHOP_KEY}",
        "auth": {"type": "bearer", "token": "${SHOP_TOKEN}"},
        "headers": {"X-Plain": "visible", "X-Mixed": 'a "quoted" ${SHOP_KEY} \\ tail'},
    },
    "destination": {"table": "shop"},
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckStore]:
    with DuckStore(tmp_path / "data" / "read.duckdb") as s:
        s.con.execute(TYPES_SQL)
        s.upsert_job("shop", parse_job(SHOP_JOB).to_stored(), "file")
        lock_down(s.con)
        yield s


@pytest.fixture
async def reader(store: DuckStore) -> AsyncIterator[Reader]:
    r = Reader(store.con.cursor(), SqlLimits(timeout=10.0, max_rows=100, concurrency=2))
    yield r
    await r.close()


async def collect(batches: AsyncIterator[pa.RecordBatch]) -> tuple[pa.Schema, pa.Table]:
    got = [b async for b in batches]
    assert got and got[0].num_rows == 0  # the first batch carries the schema alone
    return got[0].schema, pa.Table.from_batches(got, schema=got[0].schema)


# -- answers equal a direct DuckDB read ----------------------------------------------------


QUERIES = [
    "SELECT * FROM orders ORDER BY id",
    "SELECT even, count(*) AS n, sum(amount) AS total FROM orders GROUP BY even ORDER BY even",
    "WITH t AS (SELECT id, tags FROM orders WHERE id < 50) SELECT * FROM t ORDER BY id DESC",
    "FROM orders SELECT kv, wait, raw WHERE id % 7 = 0 ORDER BY id",
    "DESCRIBE orders",
    "SELECT * FROM range(5) r, (VALUES ('a'), ('b')) v(x) ORDER BY ALL",
]


@pytest.mark.parametrize("sql", QUERIES)
async def test_the_json_answer_is_a_direct_duckdb_read(
    store: DuckStore, reader: Reader, sql: str
) -> None:
    direct = store.con.sql(sql)
    rows = direct.fetchall()
    answer = await reader.answer(sql, limit=10_000)
    assert answer["columns"] == [
        {"name": n, "type": str(t)} for n, t in zip(direct.columns, direct.types, strict=True)
    ]
    cap = min(len(rows), 100)
    assert answer["rows"] == [jsonable(list(r)) for r in rows[:cap]]
    assert answer["row_count"] == cap and answer["truncated"] == (len(rows) > 100)
    assert answer["elapsed_ms"] >= 0
    json.dumps(answer, allow_nan=False)  # JSON-safe all through


@pytest.mark.parametrize("sql", QUERIES)
async def test_the_batches_are_a_direct_duckdb_read(
    store: DuckStore, reader: Reader, sql: str
) -> None:
    expected = store.con.sql(sql).to_arrow_table()
    schema, table = await collect(reader.batches(sql, batch_rows=97))
    assert schema == expected.schema
    assert table.equals(expected)


async def test_params_are_bound_and_wrong_ones_are_the_query_s_error(reader: Reader) -> None:
    answer = await reader.answer("SELECT id, name FROM orders WHERE id = ? OR name = ?", [3, "n5"])
    assert answer["rows"] == [[3, "n3"], [5, "n5"]]
    assert (await reader.answer("SELECT $1::INT + $2::INT AS s", [40, 2]))["rows"] == [[42]]
    with pytest.raises(QueryFailed, match="parameter"):
        await reader.answer("SELECT ? + ?", [1])
    with pytest.raises(QueryFailed):
        await reader.answer("SELECT ?::INT", [{"not": "an int"}])


async def test_max_rows_and_limit_cap_the_json_answer(reader: Reader) -> None:
    capped = await reader.answer("SELECT id FROM orders ORDER BY id")
    assert capped["row_count"] == 100 and capped["truncated"] is True
    assert capped["rows"][-1] == [99]
    lowered = await reader.answer("SELECT id FROM orders ORDER BY id", limit=3)
    assert lowered["rows"] == [[0], [1], [2]] and lowered["truncated"] is True
    exact = await reader.answer("SELECT id FROM orders WHERE id < 3", limit=3)
    assert exact["row_count"] == 3 and exact["truncated"] is False
    none = await reader.answer("SELECT id FROM orders", limit=0)
    assert none["rows"] == [] and none["columns"] == [{"name": "id", "type": "BIGINT"}]
    assert (await reader.answer("SELECT id FROM orders", limit=10**6))["row_count"] == 100
    _, streamed = await collect(reader.batches("SELECT id FROM orders", limit=250))
    assert streamed.num_rows == 250  # streams are not capped by max_rows, only by limit
    _, everything = await collect(reader.batches("SELECT id FROM orders"))
    assert everything.num_rows == 1000


async def test_a_valid_read_that_duckdb_refuses_names_duckdb_s_reason(reader: Reader) -> None:
    with pytest.raises(QueryFailed, match='Referenced column "nope" not found'):
        await reader.answer("SELECT nope FROM orders")
    with pytest.raises(QueryFailed, match="Division by zero|Conversion Error|Could not convert"):
        await reader.answer("SELECT 'x'::INT")


async def test_csv_and_parquet_fits_turn_what_they_cannot_hold_into_text(reader: Reader) -> None:
    sql = "SELECT id, tags, kv, wait, raw, ts FROM orders ORDER BY id"
    csv_schema, _ = await collect(reader.batches(sql, fit="csv"))
    assert [str(t) for t in csv_schema.types] == [
        "int64",
        "string",
        "string",
        "string",
        "string",
        "timestamp[us, tz=UTC]",
    ]
    parquet_schema, table = await collect(reader.batches(sql, fit="parquet"))
    assert pa.types.is_list(parquet_schema.field("tags").type)
    assert pa.types.is_string(parquet_schema.field("wait").type)
    assert table.column("wait")[1].as_py() == "00:01:00"


# -- refused: why, and nothing changed ------------------------------------------------------


def fingerprint(store: DuckStore, tmp_path: Path) -> Any:
    con = store.con
    return (
        con.execute("SELECT count(*), sum(id), sum(amount) FROM orders").fetchall(),
        con.execute("SELECT name, spec, paused FROM tg.jobs").fetchall(),
        con.execute("SELECT count(*) FROM tg.runs").fetchall(),
        con.execute(
            "SELECT database_name, schema_name, table_name FROM duckdb_tables() ORDER BY ALL"
        ).fetchall(),
        con.execute("SELECT database_name FROM duckdb_databases() ORDER BY 1").fetchall(),
        con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('memory_limit',"
            " 'threads', 'enable_external_access', 'autoload_known_extensions')"
        ).fetchall(),
        sorted(p.name for p in tmp_path.rglob("*") if not p.name.endswith(".wal")),
    )


REFUSED = [
    "INSERT INTO orders VALUES (1)",
    "COPY orders TO '{tmp}/out.csv'",
    "ATTACH '{tmp}/other.duckdb' AS other",
    "INSTALL httpfs",
    "SET memory_limit = '1GB'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_json('http://127.0.0.1:9/x.json')",
    "SELECT 1; DELETE FROM orders",
    "DELETE FROM orders",
    "DROP TABLE orders",
    "SELECT * FROM read.tg.jobs",
    "CREATE TABLE copy AS SELECT * FROM orders",
]


@pytest.mark.parametrize("sql", REFUSED)
async def test_a_refused_statement_changes_nothing(
    store: DuckStore, reader: Reader, tmp_path: Path, sql: str
) -> None:
    before = fingerprint(store, tmp_path)
    with pytest.raises(QueryRefused) as refused:
        await reader.answer(sql.format(tmp=tmp_path))
    assert refused.value.problem  # the reason, for the 422
    with pytest.raises(QueryRefused):
        await collect(reader.batches(sql.format(tmp=tmp_path)))
    assert fingerprint(store, tmp_path) == before
    assert reader.running == 0


@pytest.mark.parametrize(
    ("sql", "stopped_by"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "file system operations are disabled"),
        ("SELECT * FROM read_json('http://127.0.0.1:9/x')", "file system operations are disabled"),
        ("SELECT * FROM '/etc/passwd'", "disabled|does not exist"),
        ("COPY orders TO '{tmp}/out.csv'", "file system operations are disabled"),
        ("ATTACH '{tmp}/other.duckdb' AS other", "file system operations are disabled"),
        ("INSTALL httpfs", "file system operations are disabled"),
        ("LOAD httpfs", "Loading external extensions is disabled"),
        ("SET enable_external_access = true", "Cannot enable external access"),
        ("INSERT INTO orders (id) VALUES (1)", "read-only mode"),
        ("DROP TABLE orders", "read-only mode"),
        ("CREATE OR REPLACE VIEW tg_sql.tg.jobs AS SELECT 1", "read-only mode"),
    ],
)
async def test_past_the_parser_the_locked_database_still_refuses(
    store: DuckStore,
    reader: Reader,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sql: str,
    stopped_by: str,
) -> None:
    """The second wall: with the parser's check bypassed, the read cursor's database reaches
    no file, URL or extension and writes nothing."""
    before = fingerprint(store, tmp_path)
    monkeypatch.setattr(reader_module, "sql_problem", lambda sql, tables=None: None)
    with pytest.raises(QueryFailed, match=stopped_by):
        await reader.answer(sql.format(tmp=tmp_path))
    assert fingerprint(store, tmp_path) == before


def test_the_writer_itself_reads_no_file_once_locked(store: DuckStore) -> None:
    with pytest.raises(duckdb.PermissionException):
        store.con.execute("SELECT * FROM read_csv('/etc/passwd')")
    with pytest.raises(duckdb.InvalidInputException, match="Cannot enable external access"):
        store.con.execute("SET enable_external_access = true")
    lock_down(store.con)  # again: idempotent


# -- tg.jobs: secrets masked as the public API masks them ------------------------------------


async def test_tg_jobs_shows_the_spec_the_public_api_shows(
    store: DuckStore, reader: Reader
) -> None:
    answer = await reader.answer("SELECT name, spec FROM tg.jobs")
    ((name, spec),) = answer["rows"]
    public = parse_job(SHOP_JOB).to_public()
    assert name == "shop" and json.loads(spec) == public
    assert "${" not in spec and "SHOP_" not in spec and '"***"' in spec
    assert json.loads(spec)["source"]["headers"]["X-Plain"] == "visible"
    for sql in (
        "SUMMARIZE tg.jobs",
        "SELECT max(spec), min(spec), string_agg(spec) FROM tg.jobs",
        "SELECT j.spec FROM tg.jobs j JOIN tg.jobs k USING (name)",
        "SELECT spec FROM (SELECT * FROM tg.jobs)",
        "PIVOT tg.jobs ON name IN ('shop') USING first(spec)",
    ):
        assert "${" not in json.dumps((await reader.answer(sql))["rows"]), sql
    _, table = await collect(reader.batches("SELECT * FROM tg.jobs"))
    assert json.loads(table.column("spec")[0].as_py()) == public
    raw = store.con.execute("SELECT spec FROM tg.jobs").fetchone()
    assert raw is not None and "${SHOP_TOKEN}" in raw[0]  # the table itself keeps the refs


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)
refs = st.sampled_from(["${SHOP_TOKEN}", "x${A_KEY}y", '"${B}\\', "${C_1}${D}", "$ {NOT}"])


@settings(max_examples=200, deadline=None)
@given(value=json_values, secret=refs, where=st.lists(st.text(min_size=1, max_size=4), max_size=3))
def test_the_sql_mask_is_mask_value_of_the_stored_json(
    value: Any, secret: str, where: list[str]
) -> None:
    spec: Any = {"source": {"auth": {"token": secret}}, "extra": value}
    node = spec
    for key in where:  # a secret nested somewhere too
        node = node.setdefault(key.replace("${", ""), {}) if isinstance(node, dict) else node
    if isinstance(node, dict):
        node["deep"] = [secret, 1, None]
    with duckdb.connect() as con:
        (masked,) = con.execute(
            f"SELECT {MASK_SPEC_SQL} FROM (SELECT ?::VARCHAR AS spec)", [json.dumps(spec)]
        ).fetchone() or (None,)
    keys_clean = "${" not in json.dumps(list(_keys(spec)))
    if keys_clean:  # keys holding `${` are masked here too, beyond mask_value
        assert json.loads(masked) == mask_value(spec)


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


# -- time and concurrency limits -------------------------------------------------------------


async def test_a_long_query_is_interrupted_at_its_timeout(store: DuckStore) -> None:
    reader = Reader(store.con.cursor(), SqlLimits(timeout=0.5, max_rows=100, concurrency=2))
    try:
        began = time.monotonic()
        with pytest.raises(QueryTimeout, match="0.5s"):
            await reader.answer("SELECT count(*) FROM range(1000000000) a, range(1000000) b")
        assert time.monotonic() - began < 5
        began = time.monotonic()
        with pytest.raises(QueryTimeout):  # a lower timeout asked by the caller
            await reader.answer("SELECT sum(sleep_ms(10)) FROM range(100000)", timeout=0.2)
        assert time.monotonic() - began < 3
        with pytest.raises(QueryTimeout):  # a stream too: its batches' DuckDB time counts
            await collect(reader.batches("SELECT a.range FROM range(10000000000) a, range(10) b"))
        assert reader.running == 0
        assert (await reader.answer("SELECT 1 AS one"))["rows"] == [[1]]  # and on it goes
    finally:
        await reader.close()


async def test_a_timeout_above_tg_sql_timeout_is_capped_at_it(store: DuckStore) -> None:
    """`timeout` in the body only lowers TG_SQL_TIMEOUT: asking 60 s still stops at 0.5 s."""
    reader = Reader(store.con.cursor(), SqlLimits(timeout=0.5, max_rows=100, concurrency=2))
    try:
        began = time.monotonic()
        with pytest.raises(QueryTimeout, match="0.5s"):
            await reader.answer(
                "SELECT count(*) FROM range(1000000000) a, range(1000000) b", timeout=60.0
            )
        assert time.monotonic() - began < 5
        with pytest.raises(QueryTimeout, match="0.5s"):  # a stream too
            await collect(
                reader.batches(
                    "SELECT a.range FROM range(10000000000) a, range(10) b", timeout=60.0
                )
            )
        assert time.monotonic() - began < 10
    finally:
        await reader.close()


async def test_past_the_concurrency_limit_a_query_is_refused_at_once(reader: Reader) -> None:
    held = reader.batches("SELECT id FROM orders", batch_rows=10)
    assert (await anext(held)).num_rows == 0
    slow = asyncio.create_task(reader.answer("SELECT sleep_ms(400)"))
    await asyncio.sleep(0.05)
    assert reader.running == 2
    with pytest.raises(TooManyQueries, match="2 queries"):
        await reader.answer("SELECT 1")
    with pytest.raises(TooManyQueries):
        await anext(reader.batches("SELECT 1"))
    await held.aclose()  # a stream stopped early frees its slot
    assert (await reader.answer("SELECT 1 AS one"))["rows"] == [[1]]
    await slow
    assert reader.running == 0


async def test_a_cancelled_caller_interrupts_its_query(reader: Reader) -> None:
    task = asyncio.create_task(reader.answer("SELECT count(*) FROM range(100000000000) a"))
    await asyncio.sleep(0.3)
    began = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - began < 3 and reader.running == 0


def test_the_limits_come_from_the_environment() -> None:
    assert SqlLimits.from_environ({}) == SqlLimits(timeout=30.0, max_rows=10_000, concurrency=4)
    env = {"TG_SQL_TIMEOUT": "2m", "TG_SQL_MAX_ROWS": "50", "TG_SQL_CONCURRENCY": "8"}
    assert SqlLimits.from_environ(env) == SqlLimits(timeout=120.0, max_rows=50, concurrency=8)
    assert SqlLimits.from_environ(Settings(sql_timeout="5s").engine_env()).timeout == 5.0
    for bad in ({"TG_SQL_MAX_ROWS": "many"}, {"TG_SQL_CONCURRENCY": "0"}):
        with pytest.raises(ValueError, match="TG_SQL_"):
            SqlLimits.from_environ(bad)


# -- consistency: a query during a 200k-row merge -------------------------------------------

ROWS = 200_000


def versions(n: int, version: int) -> pa.Table:
    return pa.table(
        {"id": pa.array(range(n), pa.int64()), "v": pa.array([version] * n, pa.int64())}
    )


def running_run(store: DuckStore, minute: int) -> str:
    run_id = store.create_run("items", T0 + timedelta(minutes=minute), "manual")
    assert run_id is not None
    store.update_run(run_id, state="running")
    return run_id


def merge(run_id: str, version: int) -> Commit:
    return Commit(
        run_id,
        table="items",
        write="merge",
        primary_key=("id",),
        pages=1,
        batch=versions(ROWS, version),
    )


async def test_a_query_during_a_merge_sees_the_old_or_the_new_rows_never_a_mix(
    tmp_path: Path,
) -> None:
    from tg_actors.store.actor import Database

    path = tmp_path / "data" / "merge.duckdb"
    with DuckStore(path) as setup:
        runs = [running_run(setup, m) for m in range(2)]
    db = Database(str(path), housekeeping_seconds=3600.0)
    try:
        assert await db.commit_run(merge(runs[0], 1)) == ROWS
        stats = "SELECT count(*) AS n, min(v) AS lo, max(v) AS hi FROM items"
        # a stream that began before the merge reads its snapshot to the end
        stream = db.sql_batches("SELECT id, v FROM items", batch_rows=1000)
        first = [await anext(stream), await anext(stream)]
        seen: list[list[Any]] = []
        commit = asyncio.create_task(db.commit_run(merge(runs[1], 2)))
        while not commit.done():
            seen.append((await db.sql(stats))["rows"][0])
        assert await commit == ROWS
        seen.append((await db.sql(stats))["rows"][0])
        rest = [b async for b in stream]
        old = pa.Table.from_batches(first + rest)
        assert old.num_rows == ROWS and set(old.column("v").to_pylist()) == {1}
        assert all(row in ([ROWS, 1, 1], [ROWS, 2, 2]) for row in seen), seen
        assert len(seen) >= 2 and seen[-1] == [ROWS, 2, 2]
    finally:
        await db.close()


async def test_the_database_closes_with_a_stream_open(tmp_path: Path) -> None:
    from tg_actors.store.actor import Database

    path = tmp_path / "data" / "db.duckdb"
    db = Database(str(path), housekeeping_seconds=3600.0)
    stream = db.sql_batches("SELECT * FROM range(10000000)")
    assert (await anext(stream)).num_rows == 0
    await db.close()
    with duckdb.connect(str(path), read_only=True) as check:  # closed cleanly
        assert check.execute("SELECT count(*) FROM tg.runs").fetchone() == (0,)


async def test_a_read_cursor_is_its_own_snapshot_in_utc(store: DuckStore) -> None:
    base = store.con.cursor()
    cursor, tables = open_read(base)
    try:
        assert tables == ["orders"]
        assert cursor.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)
        store.con.execute("CREATE TABLE later AS SELECT 1 AS x")  # committed after it began
        with pytest.raises(duckdb.CatalogException):
            cursor.execute("SELECT * FROM later").fetchall()
    finally:
        cursor.close()
        base.close()
