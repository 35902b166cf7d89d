"""`tg.commands`: the audit log of every command of the API and the UI, and what makes a
command sent again with the same id be answered, not applied, a second time.

Two writers, both through the Database actor's one DuckDB thread: the Database's own group on
`commands` adds a row when it reads a command (`received`), and the command's owner (the
ConfigManager, the Scheduler, the EnginePool) writes the outcome once it applied it
(`answered`). Either may come first: each is an upsert that fills only its own columns. Pure
SQL on the caller's connection; no clock, no environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from tg_actors.interfaces import Answered, Received
from tg_actors.store.schema import aware, utc

COMMAND_FIELDS = ("command_id", "kind", "job", "who", "received_at", "answered_at", "outcome")


def _table(rows: Sequence[Received], answers: Sequence[Answered] = ()) -> pa.Table:
    ts = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "command_id": pa.array([r.command_id for r in rows], pa.string()),
            "kind": pa.array([r.kind for r in rows], pa.string()),
            "job": pa.array([r.job for r in rows], pa.string()),
            "who": pa.array([r.who for r in rows], pa.string()),
            "received_at": pa.array([aware(r.received_at, "received_at") for r in rows], ts),
            "answered_at": pa.array([aware(a.answered_at, "answered_at") for a in answers], ts)
            if answers
            else pa.nulls(len(rows), ts),
            "outcome": pa.array([a.outcome for a in answers], pa.string())
            if answers
            else pa.nulls(len(rows), pa.string()),
            "reply": pa.array([a.reply for a in answers], pa.string())
            if answers
            else pa.nulls(len(rows), pa.string()),
        }
    )


def add_received(con: duckdb.DuckDBPyConnection, rows: Sequence[Received]) -> None:
    """One row per command read, in one statement; a command already there (answered first,
    or read again after a broker hiccup) keeps its row."""
    if not rows:
        return
    unique = list({r.command_id: r for r in rows}.values())
    con.register("_tg_commands", _table(unique))
    try:
        con.execute(
            "INSERT INTO tg.commands BY NAME SELECT * FROM _tg_commands ON CONFLICT DO NOTHING"
        )
    finally:
        con.unregister("_tg_commands")


def add_answered(con: duckdb.DuckDBPyConnection, answers: Sequence[Answered]) -> None:
    """The outcomes of commands applied, in one transaction: a row is made where the
    Database has not read the command yet; a final reply is never replaced."""
    if not answers:
        return
    unique = list({a.received.command_id: a for a in answers}.values())
    con.register("_tg_answers", _table([a.received for a in unique], unique))
    try:  # one statement: atomic on its own
        con.execute(
            """INSERT INTO tg.commands BY NAME SELECT * FROM _tg_answers
            ON CONFLICT (command_id) DO UPDATE SET
                job = coalesce(tg.commands.job, excluded.job),
                answered_at = CASE WHEN tg.commands.reply IS NULL
                    THEN excluded.answered_at ELSE tg.commands.answered_at END,
                outcome = CASE WHEN tg.commands.reply IS NULL
                    THEN excluded.outcome ELSE tg.commands.outcome END,
                reply = coalesce(tg.commands.reply, excluded.reply)"""
        )
    finally:
        con.unregister("_tg_answers")


def replies(con: duckdb.DuckDBPyConnection, command_ids: Sequence[str]) -> dict[str, str]:
    """{command_id: reply JSON} of the given commands that have a final answer."""
    if not command_ids:
        return {}
    rows = con.execute(
        "SELECT command_id, reply FROM tg.commands WHERE command_id IN"
        " (SELECT unnest(?)) AND reply IS NOT NULL",
        [list(command_ids)],
    ).fetchall()
    return {str(command_id): str(reply) for command_id, reply in rows}


def list_commands(
    con: duckdb.DuckDBPyConnection, job: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Newest first (by received_at, then command_id): {command_id, kind, job, who,
    received_at, answered_at, outcome} (None: not answered yet)."""
    where, params = ("WHERE job = ?", [job]) if job is not None else ("", [])
    rows = con.execute(
        f"SELECT {', '.join(COMMAND_FIELDS)} FROM tg.commands {where}"
        " ORDER BY received_at DESC, command_id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    out = []
    for row in rows:
        item = dict(zip(COMMAND_FIELDS, row, strict=True))
        for key in ("received_at", "answered_at"):
            if item[key] is not None:
                item[key] = utc(item[key])
        out.append(item)
    return out


def prune(con: duckdb.DuckDBPyConnection, before: datetime) -> int:
    """Delete commands received before `before` (the run retention's cutoff); how many."""
    (count,) = con.execute(
        "SELECT count(*) FROM tg.commands WHERE received_at < ?", [before]
    ).fetchone() or (0,)
    if count:
        con.execute("DELETE FROM tg.commands WHERE received_at < ?", [before])
    return int(count)
