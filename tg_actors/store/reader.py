"""Queries over the live database (POST /api/sql): read-only cursors of the writer's
connection, on threads of their own, never on the writer's.

DuckDB lets one process write the file; inside it, each cursor reads one consistent snapshot
while commits go on (DESIGN "Reads while running"). A `Reader` belongs to the Database actor:

- every query gets a new cursor of one base cursor (made on the writer's thread), opened by
  readonly.open_read: a read-only transaction, names resolved through the masking views;
- `sql_problem` (tg_actors/queries.py) checks the statement against that snapshot's tables first;
  the locked-down database (readonly.lock_down) is the second wall;
- the work runs on the Reader's own pool of `concurrency` threads; past TG_SQL_CONCURRENCY
  queries at once the next is refused at once (TooManyQueries), never queued;
- TG_SQL_TIMEOUT bounds the time DuckDB works on a query (for a stream: producing its batches,
  not the time its reader takes to take them): `cursor.interrupt()` then QueryTimeout;
- `answer` gives the JSON form (at most TG_SQL_MAX_ROWS rows, `truncated` beyond), `batches`
  the stream of Arrow record batches, so a result is never whole in memory.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import duckdb
import pyarrow as pa

from tg_actors.errors import QueryFailed, QueryRefused, QueryTimeout, TooManyQueries
from tg_actors.queries import sql_problem
from tg_actors.settings import Settings, duration_seconds
from tg_actors.store.readonly import open_read
from tg_actors.store.schema import jsonable, quote

T = TypeVar("T")
BATCH_ROWS = 64 * 1024  # rows per streamed Arrow batch
Fit = Literal["arrow", "csv", "parquet"]
# DuckDB type ids a CSV file holds as they are; the rest go out as DuckDB's text of them
_CSV_TYPES = {"boolean", "tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint"}
_CSV_TYPES |= {"usmallint", "uinteger", "ubigint", "float", "double", "decimal", "varchar"}
_CSV_TYPES |= {"date", "time", "time with time zone", "timestamp", "timestamp with time zone"}
_CSV_TYPES |= {"null"}
_PARQUET_TEXT = {"interval", "union"}  # what pyarrow's Parquet writer cannot hold
_ERRORS = (duckdb.Error, pa.ArrowException, OSError, ValueError, TypeError, RuntimeError)


@dataclass(frozen=True)
class SqlLimits:
    """TG_SQL_TIMEOUT (seconds or a duration: 30s), TG_SQL_MAX_ROWS, TG_SQL_CONCURRENCY."""

    timeout: float = Settings.model_fields["sql_timeout"].default
    max_rows: int = Settings.model_fields["sql_max_rows"].default
    concurrency: int = Settings.model_fields["sql_concurrency"].default

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SqlLimits:
        """The limits as this process's environment has them (Settings.engine_env puts them
        in every Ray worker's), else the defaults; ValueError naming a bad one."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, variable in (
            ("timeout", "TG_SQL_TIMEOUT"),
            ("max_rows", "TG_SQL_MAX_ROWS"),
            ("concurrency", "TG_SQL_CONCURRENCY"),
        ):
            raw = env.get(variable)
            if raw is None or not raw.strip():
                continue
            try:
                value = float(duration_seconds(raw)) if field == "timeout" else int(raw)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ValueError(f"{variable}={raw!r}: {exc}") from None
            if value <= 0:
                raise ValueError(f"{variable}={raw!r}: must be more than 0")
            values[field] = value
        return cls(**values)


class _Budget:
    """The DuckDB time a query may still take: each call runs under a timer that interrupts
    the cursor when the budget is spent. DuckDB's own errors become QueryFailed here."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self.cursor, self.seconds, self.used = cursor, seconds, 0.0
        self.fired = threading.Event()

    def run(self, fn: Callable[[], T]) -> T:
        left = self.seconds - self.used
        if left <= 0 or self.fired.is_set():
            raise QueryTimeout(self.seconds)
        timer = threading.Timer(left, self._interrupt)
        began = time.monotonic()
        timer.start()
        try:
            return fn()
        except _ERRORS as exc:
            if self.fired.is_set():
                raise QueryTimeout(self.seconds) from exc
            raise QueryFailed(_message(exc)) from exc
        finally:
            timer.cancel()
            self.used += time.monotonic() - began

    def _interrupt(self) -> None:
        self.fired.set()
        self.cursor.interrupt()


class Query:
    """One query on a cursor of its own, used from one thread at a time; close() always."""

    def __init__(self, base: Callable[[], tuple[duckdb.DuckDBPyConnection, list[str]]]) -> None:
        self._open = base
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._budget: _Budget | None = None
        self._reader: pa.RecordBatchReader | None = None

    def relation(self, sql: str, params: Sequence[Any], timeout: float) -> duckdb.DuckDBPyRelation:
        """Open the snapshot, check `sql` against it (QueryRefused) and bind it (QueryFailed)."""
        cursor, tables = self._open()
        self._cursor, self._budget = cursor, _Budget(cursor, timeout)
        problem = sql_problem(sql, tables)
        if problem is not None:
            raise QueryRefused(problem)
        (statement,) = duckdb.extract_statements(sql)
        relation = self._budget.run(lambda: cursor.sql(statement.query, params=list(params)))
        if relation is None:  # sql_problem lets only queries through: never seen
            raise QueryRefused("is not a query")
        return relation

    def answer(
        self, sql: str, params: Sequence[Any], max_rows: int, timeout: float
    ) -> dict[str, Any]:
        """{columns: [{name, type}], rows: [[...]] (JSON-ready), row_count, truncated}."""
        relation = self.relation(sql, params, timeout)
        columns = [
            {"name": n, "type": str(t)}
            for n, t in zip(relation.columns, relation.types, strict=True)
        ]
        assert self._budget is not None
        rows = self._budget.run(lambda: relation.limit(max_rows + 1).fetchall())
        truncated = len(rows) > max_rows
        rows = rows[:max_rows]
        out = [jsonable(list(r)) for r in rows]
        return {"columns": columns, "rows": out, "row_count": len(out), "truncated": truncated}

    def start(
        self,
        sql: str,
        params: Sequence[Any],
        limit: int | None,
        timeout: float,
        fit: Fit,
        batch_rows: int,
    ) -> pa.RecordBatch:
        """Start the stream: its first batch, empty, carries the schema."""
        relation = _fitted(self.relation(sql, params, timeout), fit)
        if limit is not None:
            relation = relation.limit(limit)
        assert self._budget is not None
        self._reader = self._budget.run(lambda: relation.to_arrow_reader(batch_size=batch_rows))
        schema = self._reader.schema
        return pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)

    def next(self) -> pa.RecordBatch | None:
        """The next batch, None at the end."""
        assert self._reader is not None and self._budget is not None
        reader = self._reader
        try:
            return self._budget.run(reader.read_next_batch)
        except StopIteration:
            return None

    def interrupt(self) -> None:
        """Stop what the cursor is doing (from any thread)."""
        if self._cursor is not None:
            self._cursor.interrupt()

    def close(self) -> None:
        reader, cursor, self._reader, self._cursor = self._reader, self._cursor, None, None
        if reader is not None:
            reader.close()
        if cursor is not None:
            try:
                cursor.execute("ROLLBACK")
            except duckdb.Error:
                pass  # an aborted or interrupted transaction: closing ends it anyway
            cursor.close()


class Reader:
    """The Database actor's read path: see the module docstring. `base` is a cursor of the
    writer's connection, made on the writer's thread; the Reader owns and closes it."""

    def __init__(self, base: duckdb.DuckDBPyConnection, limits: SqlLimits | None = None) -> None:
        self.limits = limits or SqlLimits.from_environ()
        self._base = base
        self._base_lock = threading.Lock()  # base.cursor(): one caller at a time
        self._pool = ThreadPoolExecutor(self.limits.concurrency, thread_name_prefix="duckdb-read")
        self._running: set[Query] = set()
        self._closed = False

    @property
    def running(self) -> int:
        """Queries running now (streams included until they end)."""
        return len(self._running)

    async def answer(
        self,
        sql: str,
        params: Sequence[Any] = (),
        limit: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """The JSON answer: {columns: [{name, type}], rows, row_count, truncated, elapsed_ms}.
        At most min(limit, TG_SQL_MAX_ROWS) rows; `truncated` when the result holds more.
        Raises QueryRefused, QueryFailed, QueryTimeout, TooManyQueries."""
        began = time.monotonic()
        query = self._take()
        rows = self.limits.max_rows if limit is None else min(limit, self.limits.max_rows)
        work = functools.partial(query.answer, sql, params, rows, self._timeout(timeout))
        try:
            answer = await self._in_pool(query, work)
        finally:
            await self._end(query)
        return {**answer, "elapsed_ms": round((time.monotonic() - began) * 1000, 1)}

    async def batches(
        self,
        sql: str,
        params: Sequence[Any] = (),
        limit: int | None = None,
        timeout: float | None = None,
        *,
        fit: Fit = "arrow",
        batch_rows: int = BATCH_ROWS,
    ) -> AsyncGenerator[pa.RecordBatch, None]:
        """The result as Arrow record batches of up to `batch_rows` rows, every row (or the
        first `limit`). The first batch is empty and carries the schema: it comes once the
        query is checked and bound, so a refused or failing query raises before any row.
        `fit`: the format the batches become; columns it cannot hold come as text. Stopping
        early (aclose, cancel) interrupts the query and ends its transaction."""
        query = self._take()
        try:
            start = functools.partial(
                query.start, sql, params, limit, self._timeout(timeout), fit, batch_rows
            )
            yield await self._in_pool(query, start)
            while (batch := await self._in_pool(query, query.next)) is not None:
                yield batch
        finally:
            await self._end(query)

    async def table(self, sql: str, timeout: float | None = None) -> pa.Table:
        """The whole result of a run's own query (source.for_each.sql) as one Arrow table, on
        the same read path (one snapshot, the same checks) but outside TG_SQL_CONCURRENCY:
        users' queries never make a run fail, and a run never takes a user's slot."""
        if self._closed:
            raise QueryFailed("the database is closing")
        query = Query(self._open)

        def work() -> pa.Table:
            try:
                relation = query.relation(sql, (), self._timeout(timeout))
                assert query._budget is not None
                return query._budget.run(relation.to_arrow_table)
            finally:
                query.close()

        return await asyncio.to_thread(work)

    async def close(self) -> None:
        """Interrupt what runs, end its transactions, close the base cursor. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for query in list(self._running):
            query.interrupt()
        await asyncio.to_thread(self._pool.shutdown, wait=True)
        for query in list(self._running):
            query.close()
        self._running.clear()
        with self._base_lock:
            self._base.close()

    def _take(self) -> Query:
        if self._closed:
            raise QueryFailed("the database is closing")
        if len(self._running) >= self.limits.concurrency:
            raise TooManyQueries(self.limits.concurrency)
        query = Query(self._open)
        self._running.add(query)
        return query

    def _open(self) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
        with self._base_lock:
            return open_read(self._base)

    def _timeout(self, asked: float | None) -> float:
        """TG_SQL_TIMEOUT, or less when the caller asks for less."""
        return self.limits.timeout if asked is None else min(asked, self.limits.timeout)

    async def _in_pool(self, query: Query, work: Callable[[], T]) -> T:
        """`work` on the pool; if the caller is cancelled meanwhile, the query is interrupted
        and this returns only once the thread is done with it."""
        future: Future[T] = self._pool.submit(work)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            query.interrupt()
            await asyncio.wait([asyncio.wrap_future(future)])
            raise

    async def _end(self, query: Query) -> None:
        """Close the query's cursor (on the pool: not on the event loop) and free its slot."""
        try:
            if not self._closed:
                await asyncio.shield(asyncio.wrap_future(self._pool.submit(query.close)))
        finally:
            self._running.discard(query)


def _fitted(relation: duckdb.DuckDBPyRelation, fit: Fit) -> duckdb.DuckDBPyRelation:
    """Columns the format cannot hold as DuckDB's text of them (CSV: lists, structs, maps,
    blobs, intervals, uuids...; Parquet: intervals, unions)."""
    if fit == "arrow":
        return relation
    keep = _CSV_TYPES if fit == "csv" else None
    texts = [
        (keep is not None and str(t.id) not in keep) or (keep is None and t.id in _PARQUET_TEXT)
        for t in relation.types
    ]
    if not any(texts):
        return relation
    columns = [
        f"{quote(c)}::VARCHAR AS {quote(c)}" if text else quote(c)
        for c, text in zip(relation.columns, texts, strict=True)
    ]
    return relation.project(", ".join(columns))


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + " ..."
