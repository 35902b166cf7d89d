"""A run's progress: its checkpoint (tg.run_checkpoints) and a job's cursor (tg.state).

These helpers run inside the caller's transaction (writes.py): a checkpoint is written with
the batch it follows and removed with the run's commit or discard; the cursor is written with
the commit.

A cursor only moves forward: a stored cursor is replaced only by a value that is not smaller
in THE cursor order, `incremental.cursor_order` (numbers exactly, ISO-8601 instants as
instants, else text; one function for the whole code base). A run that ends behind the stored cursor (e.g. an older page replayed) leaves it as
it is, so the next run never re-reads from further back than before.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from tg_actors.chains import merge_positions
from tg_actors.incremental import cursor_order
from tg_actors.store.schema import one

_CURSORS = "_tg_new_cursors"  # name write_cursors registers its rows under


def encode(checkpoint: dict[str, Any] | None, pages: int | None) -> str | None:
    """Check the pair before anything is written; the checkpoint's JSON text, or None."""
    if checkpoint is None and pages is None:
        return None
    if checkpoint is None or pages is None:
        raise ValueError("checkpoint and pages go together: pass both or neither")
    if not isinstance(checkpoint, dict):
        raise ValueError(f"checkpoint must be a dict, not {type(checkpoint).__name__}")
    if isinstance(pages, bool) or not isinstance(pages, int) or pages < 0:
        raise ValueError(f"pages must be an int >= 0, not {pages!r}")
    return json.dumps(checkpoint, allow_nan=False)  # TypeError/ValueError if not JSON


def save(
    con: duckdb.DuckDBPyConnection, run_id: str, text: str, pages: int, rows: int, now: datetime
) -> None:
    con.execute(
        "INSERT INTO tg.run_checkpoints VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE"
        " SET checkpoint = excluded.checkpoint, pages = excluded.pages, rows = excluded.rows,"
        " updated_at = excluded.updated_at",
        [run_id, text, pages, rows, now],
    )


def touch_rows(con: duckdb.DuckDBPyConnection, run_id: str, rows: int, now: datetime) -> None:
    """A batch staged without a checkpoint: keep the stored one's row count true."""
    con.execute(
        "UPDATE tg.run_checkpoints SET rows = ?, updated_at = ? WHERE run_id = ?",
        [rows, now, run_id],
    )


def load(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any] | None:
    row = one(
        con, "SELECT checkpoint, pages, rows FROM tg.run_checkpoints WHERE run_id = ?", [run_id]
    )
    if row is None:
        return None
    return {"checkpoint": json.loads(row[0]), "pages": int(row[1]), "rows": int(row[2])}


def forget(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    con.execute("DELETE FROM tg.run_checkpoints WHERE run_id = ?", [run_id])


def run_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute("SELECT run_id FROM tg.run_checkpoints ORDER BY run_id").fetchall()
    return [str(run_id) for (run_id,) in rows]


def write_cursor(
    con: duckdb.DuckDBPyConnection, job: str, value: str, run_id: str, now: datetime
) -> bool:
    """Store the job's cursor unless the stored one is ahead; True if written."""
    row = one(con, "SELECT cursor FROM tg.state WHERE job = ?", [job])
    if row is not None and row[0] is not None and behind(value, str(row[0])):
        return False
    con.execute(
        "INSERT INTO tg.state (job, cursor, updated_at, run_id) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (job) DO UPDATE"
        " SET cursor = excluded.cursor, updated_at = excluded.updated_at,"
        " run_id = excluded.run_id",
        [job, value, now, run_id],
    )
    return True


def write_cursors(
    con: duckdb.DuckDBPyConnection, entries: list[tuple[str, str, str]], now: datetime
) -> None:
    """`write_cursor(job, value, run_id, now)` for each entry in order, in two statements: the
    stored cursors are read once, the entries folded forward-only, one upsert per job left."""
    if not entries:
        return
    jobs = sorted({job for job, _, _ in entries})
    stored: dict[str, Any] = dict(
        con.execute(
            "SELECT job, cursor FROM tg.state WHERE job IN (SELECT unnest(?::VARCHAR[]))", [jobs]
        ).fetchall()
    )
    final: dict[str, tuple[str, str]] = {}
    for job, value, run_id in entries:
        current = final[job][0] if job in final else stored.get(job)
        if current is None or not behind(value, str(current)):
            final[job] = (value, run_id)
    if not final:
        return
    rows = pa.table(
        {
            "job": pa.array(list(final), pa.string()),
            "cursor": pa.array([value for value, _ in final.values()], pa.string()),
            "updated_at": pa.array([now] * len(final), pa.timestamp("us", tz="UTC")),
            "run_id": pa.array([run_id for _, run_id in final.values()], pa.string()),
        }
    )
    con.register(_CURSORS, rows)
    try:
        con.execute(
            "INSERT INTO tg.state (job, cursor, updated_at, run_id)"
            f" SELECT job, cursor, updated_at, run_id FROM {_CURSORS}"
            " ON CONFLICT (job) DO UPDATE SET cursor = excluded.cursor,"
            " updated_at = excluded.updated_at, run_id = excluded.run_id"
        )
    finally:
        con.unregister(_CURSORS)


def positions(con: duckdb.DuckDBPyConnection, job: str) -> dict[str, dict[str, Any]]:
    """The job's committed per-chain positions ({key: {cursor, window}}; chains.py)."""
    row = one(con, "SELECT positions FROM tg.state WHERE job = ?", [job])
    return dict(json.loads(row[0])) if row and row[0] else {}


def write_positions(
    con: duckdb.DuckDBPyConnection,
    job: str,
    new: dict[str, dict[str, Any]],
    run_id: str,
    now: datetime,
) -> None:
    """Fold a run's positions into the job's, forward-only per chain and field."""
    merged = merge_positions(positions(con, job), new)
    con.execute(
        "INSERT INTO tg.state (job, positions, updated_at, run_id) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (job) DO UPDATE SET positions = excluded.positions,"
        " updated_at = excluded.updated_at, run_id = excluded.run_id",
        [job, json.dumps(merged, sort_keys=True), now, run_id],
    )


def reset_state(
    con: duckdb.DuckDBPyConnection,
    job: str,
    cursor: str | None,
    new: dict[str, dict[str, Any]] | None,
    run_id: str,
    now: datetime,
) -> None:
    """A refresh: the job's cursor and positions become exactly these, whatever was stored."""
    text = json.dumps(new, sort_keys=True) if new else None
    con.execute(
        "INSERT INTO tg.state (job, cursor, positions, updated_at, run_id) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (job) DO UPDATE SET cursor = excluded.cursor,"
        " positions = excluded.positions, updated_at = excluded.updated_at,"
        " run_id = excluded.run_id",
        [job, cursor, text, now, run_id],
    )


def save_refresh_token(
    con: duckdb.DuckDBPyConnection, job: str, token: str, origin: str, now: datetime
) -> None:
    """Keep the refresh token the server rotated to (and what it descends from) for the
    job's next run; the job's cursor and positions stay as they are."""
    con.execute(
        "INSERT INTO tg.state (job, refresh_token, refresh_origin, updated_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (job) DO UPDATE SET"
        " refresh_token = excluded.refresh_token, refresh_origin = excluded.refresh_origin,"
        " updated_at = excluded.updated_at",
        [job, token, origin, now],
    )


def behind(new: str, stored: str) -> bool:
    """True when cursor `new` is smaller than `stored` in the one cursor order."""
    return cursor_order(new, stored) < 0
