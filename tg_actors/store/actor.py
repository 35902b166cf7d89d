"""Database actor: the one process that opens the DuckDB file read-write.

Every DuckStore call runs on one dedicated thread (DuckDB connections are not thread-safe;
one writer keeps the file consistent) while the actor's event loop stays free for callers.
It also subscribes to the `status` topic and writes engine events into `tg.run_logs`, and
keeps house: at boot and every `housekeeping_seconds` (5 min) it drops the staging of runs
that are not open and applies TG_RUN_RETENTION / TG_LOG_RETENTION (store/retention.py).
Queries over the live database (`sql`, `sql_batches`: POST /api/sql) run on read-only cursors
and threads of their own (store/reader.py), never on the DuckDB writer's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from tg_actors import unused
from tg_actors.attempts import Begin, Begun, Commit
from tg_actors.broker.client import BrokerClient
from tg_actors.coalesce import Coalescer
from tg_actors.errors import ForEachError, QueryFailed, QueryRefused, QueryTimeout
from tg_actors.interfaces import Answered, Received, Upserted
from tg_actors.lifecycle import Boot
from tg_actors.messages import (
    TOPIC_COMMANDS,
    TOPIC_STATUS,
    Command,
    RunFailed,
    RunFinished,
    RunProgressed,
    RunStarted,
    RunStateChanged,
)
from tg_actors.names import DATABASE_GROUP
from tg_actors.queries import NO_TABLE
from tg_actors.runstate import RunState
from tg_actors.settings import Settings, retention_seconds
from tg_actors.store import commands
from tg_actors.store.duckdb import DuckStore
from tg_actors.store.export import Exporter, exports_dir
from tg_actors.store.reader import BATCH_ROWS, Fit, Reader
from tg_actors.store.readonly import lock_down

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from tg_actors import interfaces

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
HOUSEKEEPING_SECONDS = 300.0  # how often closed runs' staging and retention are seen to

GROUP = DATABASE_GROUP  # its consumer group on `status` and `commands`
LOG_LINGER_SECONDS = 0.1  # the pause between two inserts of run log lines (tg.run_logs)
# the commands' rows wait longer: each owner records its own commands' outcomes, so this row
# is only the Database's own account of what it read (a write costs ~2 ms of its thread)
AUDIT_LINGER_SECONDS = 0.5
LOG_BATCH_FULL = 250  # a consumed batch this big goes on at once (the consume takes 500)
SKIPPED_SHOWN = 20  # URLs of skipped responses a run's log line names


def log_entry(message: Any) -> tuple[str, Any, str, str] | None:
    """The run_logs row an event deserves, if any."""
    match message:
        case RunStarted():
            return (message.run_id, message.ts, "INFO", f"started on {message.engine}")
        case RunProgressed():
            text = f"page {message.pages}: {message.rows} rows so far"
            return (message.run_id, message.ts, "DEBUG", text)
        case RunFinished():
            text = (
                f"loaded {message.rows} rows from {message.pages} pages in {message.seconds:.2f}s"
            )
            if message.skipped:  # a `skip` rule's responses, by URL (secrets masked)
                shown = ", ".join(message.skipped[:SKIPPED_SHOWN])
                more = len(message.skipped) - SKIPPED_SHOWN
                text += f"; skipped {len(message.skipped)} responses by rule: {shown}"
                text += f" and {more} more" if more > 0 else ""
            return (message.run_id, message.ts, "INFO", text)
        case RunFailed():
            return (message.run_id, message.ts, "ERROR", message.error)
        case RunStateChanged():
            text = f"state {message.previous or '-'} -> {message.state} ({message.trigger})"
            level = {RunState.FAILED: "ERROR", RunState.RETRYING: "WARNING"}.get(
                message.state, "INFO"
            )
            if message.error:
                text += f": {message.error}"
            return (message.run_id, message.ts, level, text)
    return None


class Database:
    def __init__(
        self,
        path: str,
        broker: Any = None,
        memory_limit: str | None = None,
        checkpoint_threshold: str | None = None,
        *,
        housekeeping_seconds: float = HOUSEKEEPING_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        lean: bool = False,
    ) -> None:
        if lean:  # its first Arrow array would import pandas
            unused.refuse("the Database")
        self._housekeeping_seconds, self._sleep = housekeeping_seconds, sleep
        self._run_retention = _retention("TG_RUN_RETENTION", "run_retention")
        self._log_retention = _retention("TG_LOG_RETENTION", "log_retention")
        self._housekeeper: asyncio.Task[None] | None = None
        self.housekeeping_passes = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="duckdb")
        self._path = Path(path)
        self._store = self._executor.submit(
            functools.partial(
                DuckStore,
                self._path,
                memory_limit=memory_limit,
                checkpoint_threshold=checkpoint_threshold,
            )
        ).result()
        # the read path (POST /api/sql): the database locked against files, URLs and
        # extensions, and a cursor of its own, made here on the writer's thread; queries run
        # on the Reader's threads (store/reader.py, TG_SQL_* limits)
        self._reader = Reader(self._executor.submit(self._read_base).result())
        self._broker = BrokerClient(broker) if broker is not None else None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # group commit across callers (every engine, every run): calls that arrive while the
        # DuckDB thread is busy go together in the next transaction, so the load itself makes
        # the batches bigger. The one place begins and commits are coalesced.
        self._creates: Coalescer[dict[str, Any], str | None] = Coalescer(self._create_batch)
        self._begins: Coalescer[tuple[Begin, str], Begun] = Coalescer(self._begin_batch)
        self._commits: Coalescer[Commit, int] = Coalescer(self._commit_batch)
        self._boot = Boot(self._start)
        self._exporter: Exporter | None = None  # made at the first destination.export

    async def create_runs(self, runs: list[dict[str, Any]]) -> list[str | None]:
        """DuckStore.create_runs, grouped with concurrent calls."""
        results = await self._creates.submit_all(runs)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if not isinstance(r, BaseException)]

    async def begin_attempt(self, begin: Begin, engine: str) -> Begun:
        """DuckStore.begin_attempts of this one, grouped with concurrent calls; its own error
        is raised to this caller alone. With `for_each_sql`, Begun brings its rows, read on
        the read path (store/reader.py) once the run is running."""
        begun = await self._begins.submit((begin, engine))
        if begin.for_each_sql is None:
            return begun
        rows = await self._for_each_rows(begin.job, begin.for_each_sql)
        return dataclasses.replace(begun, rows=rows)

    async def _for_each_rows(self, job: str, sql: str) -> pa.Table:
        """The rows of a job's for_each.sql; ForEachError naming what is wrong (for a table
        not there yet, the job that writes it)."""
        try:
            return await self._reader.table(sql)
        except QueryRefused as exc:
            missing = re.search(r"reads '([^']+)': " + re.escape(NO_TABLE), exc.problem)
            if missing is None:
                raise ForEachError(f"job {job}: source.for_each.sql: {exc.problem}") from None
            table = missing.group(1).split(".")[-1]
            jobs = await self._call(self._store.list_jobs)
            writers = [
                j["name"]
                for j in jobs
                if str((j["spec"].get("destination") or {}).get("table", "")).lower()
                == table.lower()
            ]
            hint = f": run job {writers[0]!r} first?" if writers else " (no job writes it)"
            raise ForEachError(
                f"job {job}: source.for_each.sql reads table {table!r}, which does not exist"
                f" yet{hint}"
            ) from None
        except (QueryFailed, QueryTimeout) as exc:
            raise ForEachError(f"job {job}: source.for_each.sql failed: {exc}") from None

    async def commit_run(self, commit: Commit) -> int:
        """DuckStore.commit_runs of this one, grouped with concurrent calls; its own error is
        raised to this caller alone."""
        return await self._commits.submit(commit)

    async def _create_batch(self, runs: list[dict[str, Any]]) -> list[Any]:
        return list(await self._call(self._store.create_runs, runs))

    async def _begin_batch(self, items: list[tuple[Begin, str]]) -> list[Begun | Exception]:
        results: dict[int, Begun | Exception] = {}
        by_engine: dict[str, list[int]] = {}
        for i, (_, engine) in enumerate(items):
            by_engine.setdefault(engine, []).append(i)
        for engine, indices in by_engine.items():  # one transaction per engine
            begun = await self._call(
                self._store.begin_attempts, [items[i][0] for i in indices], engine
            )
            results.update(zip(indices, begun, strict=True))
        return [results[i] for i in range(len(items))]

    async def _commit_batch(self, commits: list[Commit]) -> list[int | Exception]:
        results = await self._call(self._store.commit_runs, commits)
        await self._export_after(commits, results)
        return results

    async def _export_after(self, commits: list[Commit], results: list[int | Exception]) -> None:
        """Rewrite the export file of each committed run's table whose job has
        destination.export (store/export.py: off this thread, coalesced per table); a failed
        export is a warning in the run's logs, never the run's failure."""
        wanted = [
            (c.table, c.run_id)
            for c, r in zip(commits, results, strict=True)
            if c.export is not None and not isinstance(r, BaseException)
        ]
        if not wanted:
            return
        try:
            if self._exporter is None:
                if str(self._path) == ":memory:":
                    raise ValueError("the database is in memory: no folder to export to")
                cursor = await self._call(self._store.con.cursor)  # made on the writer's thread
                if self._exporter is None:
                    self._exporter = Exporter(cursor, exports_dir(self._path), self._export_logs)
                else:
                    cursor.close()
        except Exception as exc:
            self._export_logs([run for _, run in wanted], "WARNING", f"no export: {exc}")
            return
        for table, run_id in wanted:
            self._exporter.request(table, run_id)

    def _export_logs(self, run_ids: list[str], level: str, message: str) -> None:
        """An export's outcome into the runs' logs, queued on the DuckDB thread (called from
        the exporter's thread)."""
        now = datetime.now(UTC)
        entries = [(run_id, now, level, message) for run_id in run_ids]
        self._executor.submit(self._store.add_logs, entries).add_done_callback(_logged)

    async def wait_exports(self, timeout: float = 30.0) -> bool:
        """Until no export file is pending or being written; False after `timeout` (tests)."""
        exporter = self._exporter
        return exporter is None or await asyncio.to_thread(exporter.wait_idle, timeout)

    async def start(self) -> None:
        """Wait until the status subscription runs (it starts by itself, also after a restart)."""
        await self._boot.wait()

    async def _start(self) -> None:
        # staging of runs no longer open is garbage (cancelled before pick-up, job deleted)
        await self._call(self._store.discard_closed_staging)
        if self._housekeeper is None:  # once, also when the boot is tried again
            self._housekeeper = asyncio.create_task(self._keep_house())
            self._tasks.append(self._housekeeper)
        if self._broker is not None:
            await self._broker.subscribe(TOPIC_STATUS, GROUP)
            pump = self._broker.pump_batches(TOPIC_STATUS, GROUP, self._log, self._stop)
            self._tasks.append(asyncio.create_task(pump))
            await self._broker.subscribe(TOPIC_COMMANDS, GROUP)
            audit = self._broker.pump_batches(TOPIC_COMMANDS, GROUP, self._audit, self._stop)
            self._tasks.append(asyncio.create_task(audit))

    async def _keep_house(self) -> None:
        while not self._stop.is_set():
            await self._sleep(self._housekeeping_seconds)
            if self._stop.is_set():
                return
            try:
                await self.housekeeping()
            except Exception:  # the next period tries again; the actor carries on
                log.exception("housekeeping of %s failed", self._path)

    async def housekeeping(self) -> dict[str, int]:
        """One pass: drop closed runs' staging, delete runs and logs past their retention."""
        dropped = await self._call(self._store.discard_closed_staging)
        pruned = await self._call(
            self._store.prune_history, self._run_retention, self._log_retention
        )
        self.housekeeping_passes += 1
        return {"staging": dropped, **pruned}

    async def _log(self, messages: list[Any]) -> None:
        entries = [entry for m in messages if (entry := log_entry(m)) is not None]
        if entries:  # one insert for the whole consumed batch
            await self._call(self._store.add_logs, entries)
        if len(messages) < LOG_BATCH_FULL:
            # a bounded linger: what arrives meanwhile joins the next insert (an insert costs
            # ~1.5 ms of the DuckDB thread whether it holds 3 rows or 300)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), LOG_LINGER_SECONDS)

    async def _audit(self, messages: list[Any]) -> None:
        """Every command read on `commands` gets its row in tg.commands (its owner fills in
        the outcome): the one ordered log of what anyone asked for."""
        rows = [
            Received(m.command_id, m.kind, m.job, m.who, m.ts)
            for m in messages
            if isinstance(m, Command)
        ]
        await self.commands_received(rows)
        if len(messages) < LOG_BATCH_FULL:  # as for log lines: a burst shares one insert
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), AUDIT_LINGER_SECONDS)

    async def _call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """`fn` on the DuckDB thread (one at a time, in call order)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    # -- the DuckStore, one method each (contracts: interfaces.Database) --------------------

    async def upsert_job(self, name: str, spec: dict[str, Any], origin: str) -> bool:
        return await self._call(self._store.upsert_job, name, spec, origin)

    async def upsert_jobs(
        self, jobs: Sequence[tuple[str, dict[str, Any]]], origin: str
    ) -> list[Upserted]:
        return await self._call(self._store.upsert_jobs, jobs, origin)

    async def delete_job(self, name: str) -> bool:
        return await self._call(self._store.delete_job, name)

    async def get_job(self, name: str) -> dict[str, Any] | None:
        return await self._call(self._store.get_job, name)

    async def get_jobs(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        return await self._call(self._store.get_jobs, names)

    async def list_jobs(self) -> list[dict[str, Any]]:
        return await self._call(self._store.list_jobs)

    async def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        return await self._call(self._store.set_paused, name, paused)

    async def create_run(
        self,
        job: str,
        scheduled_for: datetime,
        trigger: str,
        *,
        state: str = RunState.QUEUED,
        attempt: int = 1,
        priority: int = 50,
        error: str | None = None,
    ) -> str | None:
        return await self._call(
            self._store.create_run,
            job,
            scheduled_for,
            trigger,
            state=state,
            attempt=attempt,
            priority=priority,
            error=error,
        )

    async def update_run(
        self,
        run_id: str,
        *,
        expect_state: str | None = None,
        expect_attempt: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        return await self._call(
            self._store.update_run,
            run_id,
            expect_state=expect_state,
            expect_attempt=expect_attempt,
            **fields,
        )

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        return await self._call(self._store.get_run, run_id)

    async def list_runs(
        self, job: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        return await self._call(self._store.list_runs, job, state, limit)

    async def open_runs(self) -> list[dict[str, Any]]:
        return await self._call(self._store.open_runs)

    async def last_tick(self, job: str) -> datetime | None:
        return await self._call(self._store.last_tick, job)

    async def watermark(self, job: str) -> datetime | None:
        return await self._call(self._store.watermark, job)

    async def watermarks(self, jobs: Sequence[str]) -> dict[str, datetime]:
        return await self._call(self._store.watermarks, jobs)

    async def job_versions(self) -> dict[str, tuple[datetime, bool]]:
        return await self._call(self._store.job_versions)

    async def missing_dependents(
        self, edges: list[tuple[str, str, int]]
    ) -> list[tuple[str, str, datetime]]:
        return await self._call(self._store.missing_dependents, edges)

    async def run_counts(self) -> dict[str, int]:
        return await self._call(self._store.run_counts)

    async def last_runs(self) -> dict[str, dict[str, Any]]:
        return await self._call(self._store.last_runs)

    async def run_totals(self, buckets: Sequence[float]) -> list[dict[str, Any]]:
        return await self._call(self._store.run_totals, list(buckets))

    async def commands_received(self, rows: Sequence[Received]) -> None:
        if rows:
            await self._call(commands.add_received, self._store.con, rows)

    async def commands_answered(self, answers: Sequence[Answered]) -> None:
        await self._call(commands.add_answered, self._store.con, answers)

    async def command_replies(self, command_ids: Sequence[str]) -> dict[str, str]:
        return await self._call(commands.replies, self._store.con, command_ids)

    async def list_commands(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return await self._call(commands.list_commands, self._store.con, job, limit)

    async def add_logs(self, entries: Sequence[tuple[str, datetime, str, str]]) -> None:
        return await self._call(self._store.add_logs, entries)

    async def get_logs(self, run_id: str) -> list[dict[str, Any]]:
        return await self._call(self._store.get_logs, run_id)

    async def run_checks(self, run_id: str) -> list[dict[str, Any]]:
        return await self._call(self._store.run_checks, run_id)

    async def last_successes(self) -> dict[str, datetime]:
        return await self._call(self._store.last_successes)

    async def stage_batch(
        self,
        run_id: str,
        table: pa.Table | pa.RecordBatch,
        checkpoint: dict[str, Any] | None = None,
        pages: int | None = None,
        *,
        widen_to_varchar: bool = False,
        destination: str | None = None,
        attempt: int | None = None,
    ) -> int:
        return await self._call(
            self._store.stage_batch,
            run_id,
            table,
            checkpoint,
            pages,
            widen_to_varchar=widen_to_varchar,
            destination=destination,
            attempt=attempt,
        )

    async def discard_run(self, run_id: str) -> None:
        return await self._call(self._store.discard_run, run_id)

    async def save_refresh_token(self, job: str, token: str, origin: str) -> None:
        return await self._call(self._store.save_refresh_token, job, token, origin)

    async def staged_rows(self, run_id: str) -> int:
        return await self._call(self._store.staged_rows, run_id)

    async def save_checkpoint(
        self, run_id: str, checkpoint: dict[str, Any], pages: int, attempt: int | None = None
    ) -> None:
        return await self._call(self._store.save_checkpoint, run_id, checkpoint, pages, attempt)

    async def checkpoint(self, run_id: str) -> dict[str, Any] | None:
        return await self._call(self._store.checkpoint, run_id)

    async def discard_orphans(self, open_run_ids: set[str]) -> int:
        return await self._call(self._store.discard_orphans, open_run_ids)

    async def staged_run_ids(self) -> list[str]:
        return await self._call(self._store.staged_run_ids)

    async def cancel_run(self, run_id: str) -> bool:
        return await self._call(self._store.cancel_run, run_id)

    async def list_tables(self) -> list[dict[str, Any]]:
        return await self._call(self._store.list_tables)

    async def preview_table(self, name: str, limit: int = 50) -> dict[str, Any]:
        return await self._call(self._store.preview_table, name, limit)

    async def cursor(self, job: str) -> str | None:
        return await self._call(self._store.cursor, job)

    async def fail_run(
        self,
        run_id: str,
        *,
        expect_state: str,
        expect_attempt: int | None = None,
        finished_at: datetime,
        error: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        return await self._call(
            self._store.fail_run,
            run_id,
            expect_state=expect_state,
            expect_attempt=expect_attempt,
            finished_at=finished_at,
            error=error,
            **fields,
        )

    async def rows_loaded_total(self) -> int:
        return await self._call(self._store.rows_loaded_total)

    async def loaded_since(self, days: int, limit: int = 5000) -> list[dict[str, Any]]:
        return await self._call(self._store.loaded_since, days, limit)

    # -- the read path: queries over the live database (store/reader.py) -------------------

    def _read_base(self) -> duckdb.DuckDBPyConnection:
        lock_down(self._store.con)
        return self._store.con.cursor()

    async def sql(
        self,
        sql: str,
        params: list[Any] | None = None,
        limit: int | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        return await self._reader.answer(sql, params or [], limit, timeout)

    async def sql_batches(
        self,
        sql: str,
        params: list[Any] | None = None,
        limit: int | None = None,
        *,
        timeout: float | None = None,
        fit: Fit = "arrow",
        batch_rows: int = BATCH_ROWS,
    ) -> AsyncIterator[pa.RecordBatch]:
        batches = self._reader.batches(
            sql, params or [], limit, timeout, fit=fit, batch_rows=batch_rows
        )
        async with aclosing(batches):  # a stream stopped early ends its query at once
            async for batch in batches:
                yield batch

    async def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of one SQL statement, for tests, benchmarks and diagnostics: not part of the
        Database face (interfaces.Database), so serve/ and the actors cannot send SQL."""
        return await self._call(self._store.query, sql, params)

    async def stats(self) -> dict[str, dict[str, int]]:
        """Grouped calls so far: {kind: {"batches": n, "items": n}} (items / batches = how
        many callers each DuckDB transaction served)."""
        kinds: dict[str, Coalescer[Any, Any]] = {
            "create_runs": self._creates,
            "begin": self._begins,
            "commit": self._commits,
        }
        return {k: {"batches": c.batches, "items": c.items} for k, c in kinds.items()}

    async def ping(self) -> str:
        """ "ok" once booted (its subscriptions run), else "booting" (tried again until so)."""
        return self._boot.state

    async def path(self) -> str:
        return str(self._path)

    async def close(self) -> None:
        """Stop consuming, checkpoint and close the file. Safe to call twice."""
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await self._reader.close()  # queries are interrupted, their cursors closed
        if self._exporter is not None:  # its cursor goes before the file closes
            await asyncio.to_thread(self._exporter.close)
        await self._call(self._store.close)


def _logged(done: Future[None]) -> None:
    """Say when log lines queued from another thread could not be written."""
    if done.exception() is not None:
        log.warning("writing run logs failed: %s", done.exception())


def _retention(variable: str, field: str) -> float | None:
    """A retention setting as this actor's environment has it (Settings.engine_env puts it in
    every worker's), else the default; None keeps for ever."""
    raw = os.environ.get(variable)
    value = Settings.model_fields[field].default if raw is None else retention_seconds(raw)
    if value is None:
        return None
    assert isinstance(value, int | float)
    return float(value)


if TYPE_CHECKING:  # the actor keeps the promises of its face: mypy checks this conversion

    def _keeps_its_face(actor: Database) -> interfaces.Database:
        return actor
