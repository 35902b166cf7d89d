"""`tg_actors.run_job`: one run of one job in this process, without Ray.

For notebooks, scripts and `tg run JOB --local`. The run goes through the same pieces the
system uses, only called directly: a `manual` run row in `tg.runs` (DuckStore), each attempt
begun and committed by the same Begin/Commit records (tg_actors/attempts.py), the same
extraction (engine/attempt.py, engine/sync.py) staging each batch with its checkpoint, the
rows, cursor and `succeeded` committed in one transaction with the job's checks and schema
contract (store/writes.py), the same lines in `tg.run_logs` (store/actor.py `log_entry`), and
the job's `retries`: a failed attempt becomes `retrying`, waits its backoff (full jitter, as
the ErrorHandler), and the next attempt resumes after the last staged page.

DuckDB lets one process open a file read-write: while a `tg up` holds it, `DatabaseInUse`
says so (DuckDB's own lock error, not a guess); trigger the run there instead. Nothing here
imports Ray (tests/integration/test_local_run.py checks it in a fresh interpreter).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import duckdb
import pyarrow as pa

from tg_actors import errors
from tg_actors.attempts import Begun
from tg_actors.engine.attempt import begin_of, describe, extract, tokens_of
from tg_actors.engine.fanout import build_commit
from tg_actors.engine.sync import SyncResult
from tg_actors.errors import ChecksFailed, ForEachError, QueryFailed, QueryRefused, QueryTimeout
from tg_actors.jobs import JobSpec
from tg_actors.messages import (
    Message,
    RunFailed,
    RunFinished,
    RunProgressed,
    RunStarted,
    RunStateChanged,
)
from tg_actors.retry import RetryPolicy
from tg_actors.runstate import RunState, Trigger
from tg_actors.store.actor import log_entry
from tg_actors.store.duckdb import DuckStore

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
Progress = Callable[[int, int, float], None]  # (rows, pages, seconds since the run began)
PROGRESS_LOG_EVERY_S = 0.5  # progress lines in tg.run_logs, as the engine's events (2 a s)
_LOCK_ERROR = "Could not set lock on file"  # DuckDB's IOException when another process holds it


class JobNotFound(errors.JobNotFound, LookupError):
    """No job file by that path or name, and no job by that name in `tg.jobs`."""

    def __init__(self, name: str, looked: str = "") -> None:
        super().__init__(name)
        self.looked = looked
        if looked:
            self.args = (f"No job named {name!r}: {looked}",)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else super().__str__()


class DatabaseInUse(RuntimeError):
    """Another process (a `tg up`) holds the DuckDB file open read-write."""

    def __init__(self, path: str, detail: str) -> None:
        self.path, self.detail = path, detail
        super().__init__(
            f"{path} is held by another process (a running `tg up`?); DuckDB said: {detail}."
            " Use `tg trigger JOB` to run the job on the running system instead."
        )


@dataclass(frozen=True)
class RunSummary:
    """The run as `tg.runs` holds it once it ended."""

    run_id: str
    job: str
    state: RunState
    rows_loaded: int
    pages: int
    attempts: int
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def ok(self) -> bool:
        return self.state is RunState.SUCCEEDED

    def as_dict(self) -> dict[str, Any]:
        """JSON-able (`--json`): datetimes as ISO 8601 text, the state as its value."""
        return {
            "run_id": self.run_id,
            "job": self.job,
            "state": self.state.value,
            "ok": self.ok,
            "rows_loaded": self.rows_loaded,
            "pages": self.pages,
            "attempts": self.attempts,
            "error": self.error,
            "started_at": None if self.started_at is None else self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
        }


def run_job(
    job_or_path: JobSpec | str | os.PathLike[str],
    db: str | os.PathLike[str] | None = None,
    *,
    configs: str | os.PathLike[str] | None = None,
    on_progress: Progress | None = None,
) -> RunSummary:
    """Run one job once in this process, no Ray, and return how the run ended (a failed
    run is a summary with `ok` False, not an exception).

    `job_or_path`: a JobSpec; a job YAML file (validated as `tg validate` does:
    JobValidationError by field path); or a job name, looked up in `<configs>/jobs` and then
    in `tg.jobs` of the database (JobNotFound when neither has it). `db`: the DuckDB file
    (None: Settings().db_path); `configs`: the configs folder (None: Settings().configs).
    `on_progress(rows, pages, seconds)` is called after each page. DatabaseInUse when
    another process holds the file.
    """
    jobs_dir: Path | None = None
    if isinstance(job_or_path, JobSpec):
        spec: JobSpec | None = job_or_path
        name = job_or_path.name
    else:
        name = os.fspath(job_or_path)
        jobs_dir, spec = _from_files(name, configs)
    store = _open(_db_path(db))
    try:
        if spec is None:
            spec = _from_db(store, name, jobs_dir)
        return _in_own_loop(functools.partial(_LocalRun(store, spec, on_progress).run))
    finally:
        store.close()


# -- finding the job ------------------------------------------------------------------------


def _settings() -> Any:
    from tg_actors.settings import Settings

    return Settings()


def _db_path(db: str | os.PathLike[str] | None) -> Path:
    return Path(db) if db is not None else Path(_settings().db_path)


def _from_files(
    given: str, configs: str | os.PathLike[str] | None
) -> tuple[Path | None, JobSpec | None]:
    """(the jobs folder looked in, the job) from a file path or a name in that folder; the
    job None when it must come from tg.jobs."""
    from tg_actors.config.files import JOB_SUFFIXES, load_job_file, load_jobs

    as_path = Path(given)
    if as_path.suffix in JOB_SUFFIXES or as_path.is_file():
        if not as_path.is_file():
            raise JobNotFound(given, f"no such job file {as_path}")
        return None, load_job_file(as_path)
    jobs_dir = Path(configs) / "jobs" if configs is not None else Path(_settings().jobs_dir)
    if not jobs_dir.is_dir():
        return jobs_dir, None
    report = load_jobs([jobs_dir])
    found = report.jobs.get(given)
    if found is not None:
        return jobs_dir, found[1]
    for error in report.errors:  # the job may be the file that does not validate
        if Path(error.source).stem == given:
            raise error
    return jobs_dir, None


def _from_db(store: DuckStore, name: str, jobs_dir: Path | None) -> JobSpec:
    row = store.get_job(name)
    if row is None:
        raise JobNotFound(name, f"not in {jobs_dir}/*.yaml nor in tg.jobs of {store.path}")
    return JobSpec.model_validate(row["spec"])  # the stored form, as the Scheduler reads it


def _open(path: Path) -> DuckStore:
    try:
        return DuckStore(path)
    except duckdb.IOException as exc:
        if _LOCK_ERROR in str(exc):
            raise DatabaseInUse(str(path), str(exc)) from None
        raise


def _in_own_loop(main: Callable[[], Any]) -> RunSummary:
    """asyncio.run(main()), on a thread of its own when this one already runs a loop (a
    notebook's): a loop cannot be nested."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())  # type: ignore[no-any-return]
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = asyncio.run(main())
        except BaseException as exc:  # raised again in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=work, name="tg-local-run")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]


# -- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    error: str
    pages: int
    final: bool  # a `fail` rule or check, a frozen schema: no retry mends it


class _LocalRun:
    """One run: its row, its attempts (retried per `spec.retries`), its logs. The DuckStore
    is called from one thread of its own (DuckDB: one caller at a time), so staging a batch
    overlaps fetching the next pages as in the engine."""

    def __init__(self, store: DuckStore, spec: JobSpec, on_progress: Progress | None) -> None:
        self.store, self.spec, self.on_progress = store, spec, on_progress
        self.engine = f"local-{os.getpid()}"
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tg-local-db")
        self._began = time.monotonic()

    async def _call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def _log(self, *messages: Message) -> None:
        entries = [entry for entry in map(log_entry, messages) if entry is not None]
        await self._call(self.store.add_logs, entries)

    async def _move(self, run_id: str, at: int, previous: RunState, **fields: Any) -> None:
        """A state change as the Scheduler makes it: conditional on the run's state and
        attempt (`at`), logged."""
        target = RunState(fields["state"])
        if target is RunState.FAILED:
            del fields["state"]
            await self._call(
                self.store.fail_run,
                run_id,
                expect_state=previous.value,
                expect_attempt=at,
                **fields,
            )
        else:
            await self._call(
                self.store.update_run,
                run_id,
                expect_state=previous.value,
                expect_attempt=at,
                **{**fields, "state": target.value},
            )
        now_attempt = int(fields.get("attempt", at))
        await self._log(self._changed(run_id, target, previous, now_attempt, fields.get("error")))

    def _changed(
        self,
        run_id: str,
        state: RunState,
        previous: RunState | None,
        attempt: int,
        error: str | None = None,
    ) -> RunStateChanged:
        return RunStateChanged(
            run_id=run_id,
            job=self.spec.name,
            state=state,
            previous=previous,
            attempt=attempt,
            trigger=Trigger.MANUAL,
            error=error,
        )

    async def run(self) -> RunSummary:
        try:
            return await self._run()
        finally:
            self._pool.shutdown(wait=True)

    async def _run(self) -> RunSummary:
        spec = self.spec
        run_id = None
        while run_id is None:  # None: another run holds this very microsecond of the job
            run_id = await self._call(
                self.store.create_run, spec.name, datetime.now(UTC), Trigger.MANUAL
            )
        await self._log(self._changed(run_id, RunState.QUEUED, None, 1))
        retries = spec.retries
        policy = RetryPolicy(
            retries.max_attempts,
            retries.backoff.total_seconds(),
            retries.max_backoff.total_seconds(),
        )
        rng = random.Random()
        attempt = 1
        try:
            while True:
                failure = await self._attempt(run_id, attempt)
                if failure is None:
                    break
                if attempt < retries.max_attempts and not failure.final:
                    await self._move(
                        run_id,
                        attempt,
                        RunState.RUNNING,
                        state=RunState.RETRYING,
                        error=failure.error,
                        pages=failure.pages,
                    )
                    await asyncio.sleep(policy.delay(attempt, rng))
                    await self._move(
                        run_id,
                        attempt,
                        RunState.RETRYING,
                        state=RunState.QUEUED,
                        attempt=attempt + 1,
                        error=None,
                    )
                    attempt += 1
                    continue
                await self._move(
                    run_id,
                    attempt,
                    RunState.RUNNING,
                    state=RunState.FAILED,
                    error=failure.error,
                    finished_at=datetime.now(UTC),
                    rows_loaded=0,
                    pages=failure.pages,
                )
                break
        except BaseException:  # interrupted (Ctrl-C, a cancelled task): nothing of it is kept
            with contextlib.suppress(Exception):
                await asyncio.shield(self._cancel(run_id))
            raise
        row = await self._call(self.store.get_run, run_id)
        assert row is not None  # we wrote it, and we hold the file
        return RunSummary(
            run_id=run_id,
            job=spec.name,
            state=RunState(row["state"]),
            rows_loaded=int(row["rows_loaded"] or 0),
            pages=int(row["pages"] or 0),
            attempts=int(row["attempt"]),
            error=row["error"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )

    async def _cancel(self, run_id: str) -> None:
        if await self._call(self.store.cancel_run, run_id):
            await self._call(self.store.discard_run, run_id)
            await self._log(self._changed(run_id, RunState.CANCELLED, None, 1, "interrupted"))

    async def _attempt(self, run_id: str, attempt: int) -> _Failure | None:
        """One attempt, as SyncEngine.run: None when committed, else what failed."""
        spec, job = self.spec, self.spec.name
        pages_seen = 0
        last_logged = time.monotonic()
        progress_lines: list[Message] = []

        async def progress(rows: int, pages: int) -> None:
            nonlocal pages_seen, last_logged
            pages_seen = pages
            if self.on_progress is not None:
                try:  # progress is only news: a failing callback must not fail the run
                    self.on_progress(rows, pages, time.monotonic() - self._began)
                except Exception:
                    log.warning("run %s: on_progress failed", run_id, exc_info=True)
            if time.monotonic() - last_logged >= PROGRESS_LOG_EVERY_S:
                last_logged = time.monotonic()
                progress_lines.append(
                    RunProgressed(run_id=run_id, job=job, attempt=attempt, rows=rows, pages=pages)
                )

        try:
            begin = begin_of(spec, run_id, attempt)
            (begun,) = await self._call(self.store.begin_attempts, [begin], self.engine)
            if isinstance(begun, Exception):
                raise begun
            if begin.for_each_sql is not None:
                begun = replace(begun, rows=await self._for_each_rows(begin.for_each_sql))
            await self._log(
                RunStarted(
                    run_id=run_id, job=job, attempt=attempt, engine=self.engine, ts=begun.started_at
                )
            )
            result = await asyncio.wait_for(
                self._extract(run_id, attempt, begun, progress), spec.timeout.total_seconds()
            )
            rows = await self._call(
                self.store.commit_run, build_commit(spec, run_id, attempt, begun, result)
            )
            failed_checks = []
            if spec.checks:  # the `warn` checks that did not pass, named in the logs
                outcome = await self._call(self.store.run_checks, run_id)
                failed_checks = [str(c["name"]) for c in outcome if not c["passed"]]
        except Exception as exc:
            # staging and checkpoint stay: the next attempt continues from the last page
            await self._log(
                *progress_lines,
                RunFailed(
                    run_id=run_id,
                    job=job,
                    attempt=attempt,
                    error=describe(exc),
                    pages=pages_seen,
                    final=bool(getattr(exc, "final", False)),
                    failed_checks=list(exc.failed_names()) if isinstance(exc, ChecksFailed) else [],
                ),
            )
            return _Failure(describe(exc), pages_seen, bool(getattr(exc, "final", False)))
        finished = RunFinished(
            run_id=run_id,
            job=job,
            attempt=attempt,
            rows=rows,
            pages=result.pages,
            seconds=result.seconds,
            skipped=list(result.skipped),
            failed_checks=failed_checks,
            started_at=begun.started_at,
        )
        await self._log(*progress_lines, finished)
        if spec.destination.export is not None:
            await self._export(run_id)
        return None

    async def _extract(self, run_id: str, attempt: int, begun: Begun, progress: Any) -> SyncResult:
        dest, store, job = self.spec.destination, self.store, self.spec.name

        async def stage(table: pa.Table, checkpoint: dict[str, Any] | None, pages: int) -> None:
            await self._call(
                store.stage_batch,
                run_id,
                table,
                checkpoint=checkpoint,
                pages=pages if checkpoint is not None else None,
                widen_to_varchar=dest.widen_to_varchar,
                destination=dest.table,
                attempt=attempt,
            )

        async def keep(token: str, origin: str) -> None:  # a rotation, saved in tg.state
            await self._call(store.save_refresh_token, job, token, origin)

        tokens = tokens_of(self.spec, begun, keep)
        return await extract(self.spec, begun, stage, progress, tokens=tokens)

    async def _for_each_rows(self, sql: str) -> pa.Table:
        """source.for_each.sql on the read path the Database actor uses (store/reader.py):
        one snapshot, read-only, the database locked against files and extensions."""
        from tg_actors.store.reader import Reader
        from tg_actors.store.readonly import lock_down

        def base() -> duckdb.DuckDBPyConnection:
            lock_down(self.store.con)
            return self.store.con.cursor()

        reader = Reader(await self._call(base))
        try:
            return await reader.table(sql)
        except QueryRefused as exc:
            raise ForEachError(
                f"job {self.spec.name}: source.for_each.sql: {exc.problem}"
            ) from None
        except (QueryFailed, QueryTimeout) as exc:
            raise ForEachError(f"job {self.spec.name}: source.for_each.sql failed: {exc}") from None
        finally:
            await reader.close()

    async def _export(self, run_id: str) -> None:
        """destination.export: the table's file rewritten after the commit, as the Database
        actor does; its outcome (or failure) is a line in the run's logs, never the run's."""
        from tg_actors.store.export import Exporter, exports_dir

        now = datetime.now(UTC)
        told: list[tuple[str, datetime, str, str]] = []

        def report(run_ids: list[str], level: str, message: str) -> None:
            told.extend((r, now, level, message) for r in run_ids)

        try:
            cursor = await self._call(self.store.con.cursor)
            exporter = Exporter(cursor, exports_dir(self.store.path), report)
        except Exception as exc:
            told.append((run_id, now, "WARNING", f"no export: {exc}"))
        else:
            exporter.request(self.spec.destination.table, run_id)
            await asyncio.to_thread(exporter.wait_idle, 600.0)
            await asyncio.to_thread(exporter.close)
        await self._call(self.store.add_logs, told)
