"""What the UI needs from the API layer (serve.service.ApiService implements it).

Every method is async. Errors are exceptions from `tg_actors.errors`; the UI turns them into
status lines (see `ui.format.describe_error`). Everything returned is already public: secrets
are masked as `***` by the API, and the UI never reads environment variables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal, Protocol


class UiApi(Protocol):
    async def list_jobs(self) -> list[dict[str, Any]]:
        """Every job as {name, enabled, paused, schedule (dict | None), next_run_at (ISO | None),
        last_run (run dict | None)}."""
        ...

    async def job_yaml(self, name: str) -> str:
        """The stored job as YAML for editing, secrets shown as `***` (saving `***` back keeps
        the stored secret). Raises JobNotFound."""
        ...

    async def validate_job(self, body: str) -> dict[str, Any]:
        """Validate YAML text without saving: the public job dict. Raises JobValidationError
        (`.errors`: [(field_path, message)])."""
        ...

    async def preview(self, body: str, pages: int = 3, records: int = 5) -> dict[str, Any]:
        """A test read of the job in YAML text `body`, saved or not (`POST /api/preview`):
        up to `pages` pages (1..20), a sample of `records` records (1..100), nothing written.
        The answer: {job, table, pages_read, records, elapsed_ms, requests, pages, sample: {raw,
        transformed}, columns, table_exists, next_request, stop: {reason, detail}, chain,
        cursor, warnings, error} (see ui.preview). A source that fails is no exception: the
        answer's `error` says why. Raises JobValidationError (with `.positions`) as
        validate_job does."""
        ...

    async def put_job(self, name: str, body: str) -> tuple[bool, dict[str, Any]]:
        """Validate and save: (created?, public job). Raises JobValidationError, storing
        nothing."""
        ...

    async def delete_job(self, name: str) -> None:
        """Raises JobNotFound. The job's runs stay in history."""
        ...

    async def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        """The job's status after the change. Raises JobNotFound."""
        ...

    async def trigger(self, name: str, priority: int | None = None) -> str:
        """Queue a manual run now: its run_id. Raises JobNotFound."""
        ...

    async def backfill(self, name: str, start: datetime, end: datetime) -> str:
        """Queue a run over [start, end) (aware datetimes) that leaves the job's live cursor
        alone: its run_id. Raises JobNotFound, or BackfillRefused saying why the job cannot
        bound that range."""
        ...

    async def refresh(self, name: str) -> str:
        """Queue a full re-read that replaces the job's table when it succeeds: its run_id.
        Raises JobNotFound."""
        ...

    async def cancel(self, run_id: str) -> str:
        """Cancel a run: its new state. Raises RunNotFound, or IllegalTransition when the run
        already ended."""
        ...

    def follow(self, job: str | None = None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The `status` topic as `GET /api/events` streams it, as (event, data) pairs, `job`'s
        only when given: `run` (a run changed state: {run_id, job, state, previous, trigger,
        error, ts}), `progress` (a running attempt's {run_id, job, attempt, rows, pages, ts}),
        `job_stale`, `job_recovered`, and `dropped` ({"events": n}: this follower's bounded
        queue lost its n oldest events because it read too slowly). Endless until closed
        (aclose, or cancelling a pending `anext`), which frees it; the first `anext` may raise
        when the broker cannot be reached. A follower that stops reading holds nothing up."""
        ...

    async def list_commands(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The audit log of commands (`GET /api/commands`), newest first, `job`'s only when
        given: {command_id, kind ("upsert" | "delete" | "pause" | "resume" | "trigger" |
        "refresh" | "backfill" | "cancel" | "scale"), job (None for e.g. scale), who ("api" |
        "ui"), received_at (ISO), answered_at (ISO | None), outcome (None: no answer yet)}."""
        ...

    async def list_runs(
        self, job: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Runs, newest first: {run_id, job, state, trigger, attempt, scheduled_for, queued_at,
        started_at, finished_at, rows_loaded, pages, error} (times ISO strings or None)."""
        ...

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run dict, or None when there is no such run."""
        ...

    async def run_logs(self, run_id: str) -> list[dict[str, Any]] | None:
        """The run's log lines [{ts, level, message}], or None when there is no such run."""
        ...

    async def list_tables(self) -> list[dict[str, Any]]:
        """Data tables: [{name, rows, columns: [{name, type}]}]."""
        ...

    async def run_stats(self) -> dict[str, Any]:
        """{"by_state": {state: count}, "loaded": [{finished_at, job, rows}]} (the latter for
        succeeded runs)."""
        ...

    async def engines(self) -> dict[str, Any]:
        """The SyncEngine actors and the Scheduler's capacity: {count, capacity (run slots in
        all), running, queue_depth, nodes (distinct nodes the engines run on), engines: [{name,
        engine, state ("up" | "draining" | "unavailable"), node_id, node_ip, pid, slots,
        runs_done, current_runs: [run ids], error (only when unavailable)}]}."""
        ...

    async def scale_engines(self, count: int, grace: float | None = None) -> dict[str, Any]:
        """Add or remove engines until there are `count` (1..MAX_ENGINES); a removed engine's runs get
        `grace` seconds to end (None: the server's default), then are retried on the others.
        Returns what `engines()` returns now, plus {added, removed: [engine names],
        interrupted: [run ids]}. Raises NoCapacity when the cluster cannot place the engines
        (nothing changes), ValueError for a count out of range."""
        ...

    async def sql(
        self, sql: str, params: list[Any] | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """One read-only query (POST /api/sql's JSON): {columns: [{name, type}], rows,
        row_count, truncated, elapsed_ms}. Raises QueryRefused, QueryFailed, QueryTimeout,
        TooManyQueries."""
        ...

    async def sql_stream(
        self,
        sql: str,
        params: list[Any] | None = None,
        limit: int | None = None,
        *,
        fmt: Literal["arrow", "csv", "parquet"] = "arrow",
    ) -> AsyncIterator[bytes]:
        """The whole result as the bytes of `fmt`, chunk by chunk; the query's errors are
        raised before the first chunk."""
        ...
