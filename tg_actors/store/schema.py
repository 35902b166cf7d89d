"""The metadata schema `tg` (CONTRACT §6) and the names the store's modules share.

Every statement is idempotent (`IF NOT EXISTS`), so opening an existing file is the same call as
creating a new one. Timestamps are TIMESTAMPTZ; the store's connection runs with TimeZone=UTC.
"""

from __future__ import annotations

import duckdb

RUN_STATES = ("queued", "running", "retrying", "succeeded", "failed", "cancelled", "skipped")
OPEN_STATES = ("queued", "running", "retrying")

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
)
UPDATABLE_RUN_FIELDS = frozenset(
    {"state", "attempt", "started_at", "finished_at", "error", "rows_loaded", "pages", "engine"}
)
TIMESTAMP_RUN_FIELDS = frozenset({"scheduled_for", "queued_at", "started_at", "finished_at"})

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
    """CREATE TABLE IF NOT EXISTS tg.state (
        job VARCHAR PRIMARY KEY,
        cursor VARCHAR,
        updated_at TIMESTAMPTZ NOT NULL,
        run_id VARCHAR
    )""",
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


def quote(name: str) -> str:
    """A SQL identifier in double quotes: `order` and `Total Amount` are columns like any other."""
    return '"' + name.replace('"', '""') + '"'
