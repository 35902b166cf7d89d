"""Housekeeping of the metadata: leftover staging of closed runs, and history retention.

Pure SQL on the caller's connection (the Database actor's one DuckDB thread); nothing here
reads a clock or the environment: `now` and the retention periods are passed in.

- `discard_closed_staging`: a run that is not open (queued, running, retrying) never stages
  again, so its staging (stage table, listed files) and checkpoint are garbage: a run
  cancelled before an engine picked it up, or cancelled by its job's deletion, used to keep
  them for ever.
- `prune_history`: finished runs whose finish (`finished_at`; `queued_at` for a run that never
  got one, such as `skipped`) is older than the run retention are deleted with their log
  lines; log lines alone go after the (shorter) log retention. The run retention is
  TG_RUN_HISTORY_DAYS days when that is set (0 keeps forever; it wins over
  TG_RUN_RETENTION, see settings.py), else TG_RUN_RETENTION (90d). Never deleted: an open run, the
  newest run of each job (what `GET /api/jobs` shows as `last_run`), and each job's newest
  schedule/catchup run (the Scheduler's watermark is read from it: deleting it could re-fire
  old ticks). Commands of the audit log (tg.commands) received before the run retention's
  cutoff go with them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb

from tg_actors.store import commands, progress, writes
from tg_actors.store.schema import OPEN_SQL, TICK_SQL

# runs retention may delete: finished before the cutoff (the one parameter), and neither a
# job's newest run (list_runs order) nor its newest tick (last_tick)
_EXPIRED = f"""
    SELECT run_id FROM tg.runs
    WHERE state NOT IN ({OPEN_SQL}) AND coalesce(finished_at, queued_at) < ?
      AND run_id NOT IN (
        SELECT run_id FROM tg.runs QUALIFY row_number() OVER
          (PARTITION BY job ORDER BY queued_at DESC, run_id DESC) = 1)
      AND run_id NOT IN (
        SELECT run_id FROM tg.runs WHERE trigger IN ({TICK_SQL}) QUALIFY
          row_number() OVER (PARTITION BY job ORDER BY scheduled_for DESC, run_id DESC) = 1)
"""


def discard_closed_staging(con: duckdb.DuckDBPyConnection) -> int:
    """Drop the staging and checkpoint of every run that is not open (or has no row any
    more), in one transaction; how many runs. Open runs keep theirs: they resume from it."""
    rows = con.execute(f"SELECT run_id FROM tg.runs WHERE state IN ({OPEN_SQL})").fetchall()
    return writes.discard_orphans(con, {str(run_id) for (run_id,) in rows})


def prune_history(
    con: duckdb.DuckDBPyConnection,
    now: datetime,
    run_retention: timedelta | None,
    log_retention: timedelta | None,
) -> dict[str, int]:
    """Delete runs past `run_retention` with their logs, and log lines of runs past
    `log_retention` (None: keep for ever), in one transaction. {"runs": n, "logs": n}."""
    runs = logs = 0
    with writes.transaction(con):
        if log_retention is not None:
            logs += _count(
                con,
                f"DELETE FROM tg.run_logs WHERE run_id IN ({_EXPIRED})",
                [now - log_retention],
            )
        if run_retention is not None:
            cutoff = [now - run_retention]
            commands.prune(con, cutoff[0])  # the audit log keeps as long as the runs
            expired = [str(r) for (r,) in con.execute(_EXPIRED, cutoff).fetchall()]
            if expired:
                listed = "SELECT unnest(?::VARCHAR[])"
                logs += _count(
                    con, f"DELETE FROM tg.run_logs WHERE run_id IN ({listed})", [expired]
                )
                con.execute(f"DELETE FROM tg.run_checks WHERE run_id IN ({listed})", [expired])
                # closed runs have no staging left, unless a crash kept some
                leftovers = set(writes.staged_run_ids(con)) | set(progress.run_ids(con))
                for run_id in sorted(leftovers.intersection(expired)):
                    writes.drop_staging(con, run_id)
                runs = _count(con, f"DELETE FROM tg.runs WHERE run_id IN ({listed})", [expired])
    return {"runs": runs, "logs": logs}


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> int:
    """Run a DELETE; the rows it deleted (DuckDB answers the count as one row)."""
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row else 0
