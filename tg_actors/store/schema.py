"""The metadata schema `tg` (CONTRACT §6), its value conventions, and shared SQL helpers.

Every statement is idempotent (`IF NOT EXISTS`), so opening an existing file is the same call as
creating a new one. Timestamps are TIMESTAMPTZ; the store's connection runs with TimeZone=UTC,
takes only aware datetimes and hands back datetimes with tzinfo=datetime.UTC.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import duckdb

from tg_actors.runstate import ACTIVE, TICK_TRIGGERS, RunState

RUN_STATES: tuple[RunState, ...] = tuple(RunState)
OPEN_STATES: tuple[RunState, ...] = tuple(s for s in RunState if s in ACTIVE)
"""Runs that may still change (queued, running, retrying), in RunState order."""


def sql_strings(values: Iterable[str]) -> str:
    """`'a', 'b'`: vocabulary values (RunState, Trigger) as SQL literals, for an `IN (...)`
    rendered once at import. Refuses anything but plain names, so nothing needs escaping."""
    out = []
    for value in values:
        if not value.replace("_", "").replace(":", "").isalnum():
            raise ValueError(f"not a vocabulary name: {value!r}")
        out.append(f"'{value}'")
    return ", ".join(out)


OPEN_SQL = sql_strings(OPEN_STATES)
"""OPEN_STATES as SQL literals: `state IN ({OPEN_SQL})`."""
TICK_SQL = sql_strings(TICK_TRIGGERS)
"""TICK_TRIGGERS as SQL literals: `trigger IN ({TICK_SQL})`."""

# the run object of CONTRACT §4, plus priority and engine
RUN_FIELDS = (
    "run_id",
    "job",
    "state",
    "trigger",
    "attempt",
    "priority",
    "scheduled_for",
    "queued_at",
    "started_at",
    "finished_at",
    "rows_loaded",
    "pages",
    "error",
    "engine",
    "range_from",  # a backfill's range, None for other runs
    "range_to",
    "skipped_requests",
    "rows_discarded",  # rows a `discard_rows` schema contract dropped
)
UPDATABLE_RUN_FIELDS = frozenset(
    {"state", "attempt", "started_at", "finished_at", "error", "rows_loaded", "pages", "engine"}
)
TIMESTAMP_RUN_FIELDS = frozenset(
    {"scheduled_for", "queued_at", "started_at", "finished_at", "range_from", "range_to"}
)

JOB_FIELDS = ("name", "spec", "paused", "origin", "created_at", "updated_at")

_DDL = (
    "CREATE SCHEMA IF NOT EXISTS tg",
    """CREATE TABLE IF NOT EXISTS tg.jobs (
        name VARCHAR PRIMARY KEY,
        spec VARCHAR NOT NULL,           -- JSON text of the stored form (${NAME} refs kept)
        paused BOOLEAN NOT NULL DEFAULT false,
        origin VARCHAR NOT NULL,         -- 'file' | 'api'
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )""",
    # UNIQUE(job, scheduled_for) is the scheduler's dedupe: a tick is written at most once
    """CREATE TABLE IF NOT EXISTS tg.runs (
        run_id VARCHAR PRIMARY KEY,
        job VARCHAR NOT NULL,
        state VARCHAR NOT NULL,
        trigger VARCHAR NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 1,
        priority INTEGER NOT NULL DEFAULT 50,
        scheduled_for TIMESTAMPTZ NOT NULL,
        queued_at TIMESTAMPTZ NOT NULL,
        started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ,
        rows_loaded BIGINT NOT NULL DEFAULT 0,
        pages INTEGER NOT NULL DEFAULT 0,
        error VARCHAR,
        engine VARCHAR,
        UNIQUE (job, scheduled_for)
    )""",
    """CREATE TABLE IF NOT EXISTS tg.run_logs (
        run_id VARCHAR NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        level VARCHAR NOT NULL,
        message VARCHAR NOT NULL
    )""",
    # get_logs is a point lookup in an append-only table that grows without bound. No index on
    # tg.runs(state): an indexed column turns each state update into a delete + insert, and a
    # columnar scan of tg.runs is cheap anyway.
    "CREATE INDEX IF NOT EXISTS run_logs_run_id ON tg.run_logs (run_id)",
    # the instant from which the job's schedule counts: set when the job is created, resumed,
    # re-enabled, or its schedule or triggers change. Ticks (and upstream successes) before it
    # are not missed runs: a resumed job does not replay the window it was paused for.
    "ALTER TABLE tg.jobs ADD COLUMN IF NOT EXISTS schedule_from TIMESTAMPTZ",
    """CREATE TABLE IF NOT EXISTS tg.state (
        job VARCHAR PRIMARY KEY,
        cursor VARCHAR,
        updated_at TIMESTAMPTZ NOT NULL,
        run_id VARCHAR
    )""",
    # for_each and window jobs: per-chain cursors and window positions, JSON (chains.py)
    "ALTER TABLE tg.state ADD COLUMN IF NOT EXISTS positions VARCHAR",
    # oauth2_refresh_token: the token a run rotated to, and the digest of the job's own it
    # descends from; the masking view of tg.state leaves both out (store/readonly.py)
    "ALTER TABLE tg.state ADD COLUMN IF NOT EXISTS refresh_token VARCHAR",
    "ALTER TABLE tg.state ADD COLUMN IF NOT EXISTS refresh_origin VARCHAR",
    # a backfill run's range [range_from, range_to), written with the run (trigger backfill)
    "ALTER TABLE tg.runs ADD COLUMN IF NOT EXISTS range_from TIMESTAMPTZ",
    "ALTER TABLE tg.runs ADD COLUMN IF NOT EXISTS range_to TIMESTAMPTZ",
    # responses a `skip` response rule dropped (their URLs are in the run's logs)
    "ALTER TABLE tg.runs ADD COLUMN IF NOT EXISTS skipped_requests INTEGER DEFAULT 0",
    # rows of the run a `discard_rows` schema contract dropped (they did not fit the table)
    "ALTER TABLE tg.runs ADD COLUMN IF NOT EXISTS rows_discarded BIGINT DEFAULT 0",
    # the results of a run's `checks`, written by the commit (store/checks.py): in the commit
    # transaction when it lands, on their own when a `fail` check rolled it back
    """CREATE TABLE IF NOT EXISTS tg.run_checks (
        run_id VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        passed BOOLEAN NOT NULL,
        value VARCHAR,                   -- what was measured, as text (or the check's error)
        on_fail VARCHAR NOT NULL,        -- 'fail' | 'warn'
        checked_at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS run_checks_run_id ON tg.run_checks (run_id)",
    # where an open run resumes: written in the transaction that stages the batch it follows,
    # deleted in the one that commits or discards the run (store/progress.py)
    """CREATE TABLE IF NOT EXISTS tg.run_checkpoints (
        run_id VARCHAR PRIMARY KEY,
        checkpoint VARCHAR NOT NULL,     -- JSON text of the engine's resume point
        pages INTEGER NOT NULL,          -- pages fetched so far
        rows BIGINT NOT NULL,            -- rows staged so far
        updated_at TIMESTAMPTZ NOT NULL
    )""",
    # a run's staged batches, one Arrow IPC file each (store/staging.py): listed in the
    # transaction that stages the batch, unlisted in the one that commits or discards the run
    """CREATE TABLE IF NOT EXISTS tg.staged_batches (
        run_id VARCHAR NOT NULL,
        first_seq BIGINT NOT NULL,       -- staging order of the file's first row
        rows BIGINT NOT NULL,
        file VARCHAR NOT NULL            -- <run_id>/<first_seq>.arrow, under the staging folder
    )""",
    # every command of the API and the UI (store/commands.py): a row when the Database reads it
    # on `commands`, its outcome when its owner applied it; `reply` (JSON) is what a command
    # sent again with the same id is answered, so it is applied once. No body, no secret.
    """CREATE TABLE IF NOT EXISTS tg.commands (
        command_id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,           -- upsert | delete | pause | resume | trigger | ...
        job VARCHAR,
        who VARCHAR NOT NULL,            -- 'api' | 'ui'
        received_at TIMESTAMPTZ NOT NULL,
        answered_at TIMESTAMPTZ,
        outcome VARCHAR,                 -- NULL until answered
        reply VARCHAR                    -- JSON; NULL unless the answer is final
    )""",
    "CREATE INDEX IF NOT EXISTS commands_job ON tg.commands (job)",
)


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create schema `tg` and its tables where missing, in one transaction."""
    con.execute("BEGIN TRANSACTION")
    try:
        for statement in _DDL:
            con.execute(statement)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def job_row(row: tuple[Any, ...]) -> dict[str, Any]:
    job = dict(zip(JOB_FIELDS, row, strict=True))
    job["spec"] = json.loads(job["spec"])
    job["created_at"], job["updated_at"] = utc(job["created_at"]), utc(job["updated_at"])
    return job


def run_row(row: tuple[Any, ...]) -> dict[str, Any]:
    run = dict(zip(RUN_FIELDS, row, strict=True))
    for key in TIMESTAMP_RUN_FIELDS:
        if run[key] is not None:
            run[key] = utc(run[key])
    return run


def quote(name: str) -> str:
    """A SQL identifier in double quotes: `order` and `Total Amount` are columns like any other."""
    return '"' + name.replace('"', '""') + '"'


def one(con: duckdb.DuckDBPyConnection, sql: str, params: object = None) -> tuple[Any, ...] | None:
    """The first row, or None. Fetches to the end: duckdb 2 refuses register()/sql() while an
    execute() result is only partly read ("connection has an unfinished result")."""
    rows = con.execute(sql, params).fetchall()
    return rows[0] if rows else None


def utc(value: datetime) -> datetime:
    """DuckDB hands back ZoneInfo('UTC'); normalise to datetime.UTC."""
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def aware(value: datetime, name: str = "scheduled_for") -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def jsonable(value: Any) -> Any:
    """A DuckDB value as JSON-ready Python: str for times/uuids, float for decimals, dicts."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN/Infinity
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, datetime):
        return (utc(value) if value.tzinfo else value).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta | UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dict):  # STRUCT and MAP
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return str(value)
