"""DuckStore: the one read-write handle on the DuckDB file, owned by the Database actor.

Call it from one thread, serially: a DuckDB connection is not safe for concurrent use, and only
this process may open the file read-write. Metadata lives in schema `tg`, data tables in
`main` (CONTRACT §6). Every timestamp goes in and comes out timezone-aware, in UTC.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from tg_actors.attempts import Begin, Begun, Commit
from tg_actors.errors import (
    ConfigError,
    IllegalTransition,
    JobNotFound,
    RunNotFound,
    StaleAttempt,
)
from tg_actors.interfaces import Upserted
from tg_actors.jobs import schedule_part
from tg_actors.runstate import RunState, check_transition, split_trigger
from tg_actors.store import batched, progress, retention, tables, writes
from tg_actors.store.schema import (
    JOB_FIELDS,
    OPEN_SQL,
    OPEN_STATES,
    RUN_FIELDS,
    RUN_STATES,
    TICK_SQL,
    TIMESTAMP_RUN_FIELDS,
    UPDATABLE_RUN_FIELDS,
    aware,
    create_schema,
    job_row,
    one,
    quote,
    run_row,
    utc,
)
from tg_actors.store.staging import Staging

_RUN_COLUMNS = ", ".join(RUN_FIELDS)
_JOB_COLUMNS = ", ".join(JOB_FIELDS)
_ORIGINS = ("file", "api")
_OPEN_PARAMS = ", ".join("?" * len(OPEN_STATES))  # open_runs passes OPEN_STATES to these


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DuckStore:
    """Jobs, runs, logs, cursors and data tables in one DuckDB file.

    `clock` returns the aware "now" used for created/queued/updated/finished stamps.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], datetime] = _utc_now,
        memory_limit: str | None = None,
        checkpoint_threshold: str | None = None,
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            # DuckDB names the catalog after the file: `tg.runs` would be ambiguous
            if Path(path).stem.lower() == "tg":
                raise ConfigError(f"{path}: a DuckDB file named 'tg' clashes with schema tg")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._staging = Staging(self.path)
        self._con: duckdb.DuckDBPyConnection | None = duckdb.connect(self.path)
        self._con.execute("SET TimeZone = 'UTC'")  # TIMESTAMPTZ values come back in UTC
        if memory_limit:  # DuckDB takes 80% of RAM by default; merges spill to disk past this
            self._con.execute("SET memory_limit = ?", [memory_limit])
        if checkpoint_threshold:  # TG_DUCKDB_CHECKPOINT_THRESHOLD: memory for speed
            self._con.execute("SET checkpoint_threshold = ?", [checkpoint_threshold])
        create_schema(self._con)
        self._staging.sweep(self._con, files=True)  # what a crash left: never listed, or unlisted

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise RuntimeError(f"DuckStore({self.path!r}) is closed")
        return self._con

    def close(self) -> None:
        """CHECKPOINT (fold the WAL into the file) and close; idempotent."""
        if self._con is None:
            return
        con, self._con = self._con, None
        try:
            con.execute("CHECKPOINT")
        finally:
            con.close()
            self._staging.close()

    def __enter__(self) -> DuckStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> datetime:
        return aware(self._clock(), "clock()")

    # -- jobs ------------------------------------------------------------------------------

    def upsert_job(self, name: str, spec: dict[str, Any], origin: str) -> bool:
        """Store the job's stored form; True if created. A replace keeps paused and created_at;
        a new job, or a change of its schedule, `enabled` or `triggers`, moves schedule_from
        to now (see watermark)."""
        return self.upsert_jobs([(name, spec)], origin)[0].created

    def upsert_jobs(
        self, jobs: Sequence[tuple[str, dict[str, Any]]], origin: str
    ) -> list[Upserted]:
        """`upsert_job` for each (name, spec), all in one transaction (a jobs folder at start:
        one commit, not one per file); each job's created flag and its paused flag as stored."""
        if origin not in _ORIGINS:
            raise ValueError(f"origin must be one of {_ORIGINS}, not {origin!r}")
        now, done = self._now(), []
        with writes.transaction(self.con):
            names = [name for name, _ in jobs]
            stored = {
                str(n): (json.loads(text), bool(paused))
                for n, text, paused in self.con.execute(
                    "SELECT name, spec, paused FROM tg.jobs WHERE list_contains(?, name)", [names]
                ).fetchall()
            }
            for name, spec in jobs:
                text, exists = json.dumps(spec), stored.get(name)
                if exists:
                    moved = schedule_part(exists[0]) != schedule_part(spec)
                    self.con.execute(
                        "UPDATE tg.jobs SET spec = ?, origin = ?, updated_at = ?, schedule_from"
                        " = CASE WHEN ? THEN ? ELSE schedule_from END WHERE name = ?",
                        [text, origin, now, moved, now, name],
                    )
                else:
                    self.con.execute(
                        "INSERT INTO tg.jobs (name, spec, paused, origin, created_at,"
                        " updated_at, schedule_from) VALUES (?, ?, false, ?, ?, ?, ?)",
                        [name, text, origin, now, now, now],
                    )
                stored[name] = (spec, exists[1] if exists else False)  # a name given twice
                done.append(Upserted(name, created=exists is None, paused=stored[name][1]))
        return done

    def delete_job(self, name: str) -> bool:
        """Remove the job; its runs (and its cursor in tg.state) stay. True if it existed."""
        rows = self.con.execute("DELETE FROM tg.jobs WHERE name = ? RETURNING name", [name])
        return bool(rows.fetchall())

    def get_job(self, name: str) -> dict[str, Any] | None:
        found = one(self.con, f"SELECT {_JOB_COLUMNS} FROM tg.jobs WHERE name = ?", [name])
        return job_row(found) if found else None

    def get_jobs(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored jobs among `names`, in one query: {name: row}; a name not stored is
        left out (as get_job answers None)."""
        if not names:
            return {}
        rows = self.con.execute(
            f"SELECT {_JOB_COLUMNS} FROM tg.jobs WHERE name IN (SELECT unnest(?::VARCHAR[]))",
            [list(names)],
        ).fetchall()
        found = [job_row(row) for row in rows]
        return {str(row["name"]): row for row in found}

    def list_jobs(self) -> list[dict[str, Any]]:
        rows = self.con.execute(f"SELECT {_JOB_COLUMNS} FROM tg.jobs ORDER BY name").fetchall()
        return [job_row(row) for row in rows]

    def job_versions(self) -> dict[str, tuple[datetime, bool]]:
        """{name: (updated_at, paused)} of every job: what the Scheduler compares against the
        jobs it holds, to reconcile changes whose message the broker lost."""
        rows = self.con.execute("SELECT name, updated_at, paused FROM tg.jobs").fetchall()
        return {str(n): (utc(at), bool(p)) for n, at, p in rows}

    def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        """Set the flag and return the job; raises JobNotFound."""
        now = self._now()
        row = one(  # a resume moves schedule_from: the paused window is not replayed
            self.con,
            "UPDATE tg.jobs SET schedule_from = CASE WHEN paused AND NOT ? THEN ?"
            " ELSE schedule_from END, paused = ?, updated_at = ? WHERE name = ?"
            f" RETURNING {_JOB_COLUMNS}",
            [paused, now, paused, now, name],
        )
        if row is None:
            raise JobNotFound(name)
        return job_row(row)

    # -- runs ------------------------------------------------------------------------------

    def create_run(
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
        """Write a new run; its run_id, or None when (job, scheduled_for) already has one."""
        trigger, span = split_trigger(trigger)
        values = [uuid.uuid4().hex, job, state, trigger, attempt, priority]
        values += [aware(scheduled_for), self._now(), error, *span]
        # the UNIQUE constraint decides; RETURNING yields no row for a skipped duplicate
        row = one(
            self.con,
            "INSERT INTO tg.runs (run_id, job, state, trigger, attempt, priority, scheduled_for,"
            " queued_at, error, range_from, range_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING RETURNING run_id",
            values,
        )
        return str(row[0]) if row else None

    def create_runs(self, runs: list[dict[str, Any]]) -> list[str | None]:
        """Many `create_run`s in one statement (a tick of many jobs): each dict has job,
        scheduled_for, trigger, state, priority and, optionally, run_id (minted by the caller).
        Returns run_id or None per entry, in order: None when (job, scheduled_for) is held by
        another run. Idempotent for minted ids: an entry whose tick already holds that very
        run_id (an earlier call whose answer was lost) returns it again."""
        if not runs:
            return []
        ids = [str(r.get("run_id") or uuid.uuid4().hex) for r in runs]
        now = self._now()
        triggers = [split_trigger(r["trigger"]) for r in runs]
        span = pa.timestamp("us", tz="UTC")
        batch = pa.table(
            {
                "run_id": ids,
                "job": [r["job"] for r in runs],
                "state": [r.get("state", RunState.QUEUED) for r in runs],
                "trigger": [t for t, _ in triggers],
                "attempt": pa.array([1] * len(runs), pa.int32()),
                "priority": pa.array([r.get("priority", 50) for r in runs], pa.int32()),
                "scheduled_for": pa.array(
                    [aware(r["scheduled_for"]) for r in runs], pa.timestamp("us", tz="UTC")
                ),
                "queued_at": pa.array([now] * len(runs), pa.timestamp("us", tz="UTC")),
                "range_from": pa.array([r[0] for _, r in triggers], span),
                "range_to": pa.array([r[1] for _, r in triggers], span),
            }
        )
        insert = (
            "INSERT INTO tg.runs (run_id, job, state, trigger, attempt, priority,"
            " scheduled_for, queued_at, range_from, range_to) SELECT * FROM _new_runs"
        )
        self.con.register("_new_runs", batch)
        try:
            # one statement, so all or nothing; ON CONFLICT costs a probe that grows with
            # tg.runs (11 ms at 500k runs, against 1.3 ms), so only once a conflict is known
            try:
                self.con.execute(insert)
                return list[str | None](ids)
            except duckdb.ConstraintException:
                inserted = self.con.execute(
                    f"{insert} ON CONFLICT DO NOTHING RETURNING run_id"
                ).fetchall()
        finally:
            self.con.unregister("_new_runs")
        created = {row[0] for row in inserted}
        if len(created) < len(ids):  # a conflict: our own earlier insert, or another run's
            known = self.con.execute(
                "SELECT run_id FROM tg.runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
                [[i for i in ids if i not in created]],
            ).fetchall()
            created |= {row[0] for row in known}
        return [run_id if run_id in created else None for run_id in ids]

    def update_run(
        self,
        run_id: str,
        *,
        expect_state: str | None = None,
        expect_attempt: int | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Change only the given fields; return the run. ValueError / RunNotFound. With
        `expect_state` (and `expect_attempt`), only while the run is still in that state (at
        that attempt), else IllegalTransition: a late state change must never overwrite a newer
        one (e.g. `succeeded`), nor one of a newer attempt. A state change must be a move of the
        transition table (tg_actors/runstate.py) from `expect_state`. Staging is kept: a run
        that fails for good goes through `fail_run`."""
        return self._update_run(run_id, expect_state, expect_attempt, fields, drop_staging=False)

    def fail_run(
        self,
        run_id: str,
        *,
        expect_state: str,
        expect_attempt: int | None = None,
        finished_at: datetime,
        error: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """The run failed for good: `failed`, with its error and finish time, under the same
        conditions as update_run; its staging and checkpoint are dropped in the same
        transaction as the state change (CONTRACT §6: a failed run keeps nothing), and only
        when the change was made (a refused one drops nothing)."""
        fields |= {"state": RunState.FAILED, "finished_at": finished_at, "error": error}
        return self._update_run(run_id, expect_state, expect_attempt, fields, drop_staging=True)

    def _update_run(
        self,
        run_id: str,
        expect_state: str | None,
        expect_attempt: int | None,
        fields: dict[str, Any],
        *,
        drop_staging: bool,
    ) -> dict[str, Any]:
        unknown = set(fields) - UPDATABLE_RUN_FIELDS
        if unknown:
            raise ValueError(f"cannot update run field(s) {sorted(unknown)}")
        if expect_state is not None and "state" in fields and fields["state"] != expect_state:
            check_transition(run_id, expect_state, fields["state"])
        values = [
            aware(v, k) if k in TIMESTAMP_RUN_FIELDS and v is not None else v
            for k, v in fields.items()
        ]
        if not fields:
            found = self.get_run(run_id)
            if found is None:
                raise RunNotFound(run_id)
            return found
        assignments = ", ".join(f"{quote(k)} = ?" for k in fields)
        where, params = "run_id = ?", [run_id]
        if expect_state is not None:
            where, params = "run_id = ? AND state = ?", [run_id, expect_state]
        if expect_attempt is not None:
            where += " AND attempt = ?"
            params.append(str(expect_attempt))
        sql = f"UPDATE tg.runs SET {assignments} WHERE {where} RETURNING {_RUN_COLUMNS}"
        if drop_staging:
            with writes.transaction(self.con):
                row = one(self.con, sql, [*values, *params])
                if row is not None:
                    writes.drop_staging(self.con, run_id)
            self._staging.sweep(self.con)
        else:
            row = one(self.con, sql, [*values, *params])
        if row is None:
            current = self.get_run(run_id)
            if current is None:
                raise RunNotFound(run_id)
            if expect_attempt is not None and current["attempt"] != expect_attempt:
                raise StaleAttempt(run_id, expect_attempt, int(current["attempt"]))
            raise IllegalTransition(run_id, current["state"], str(fields.get("state", "?")))
        return run_row(row)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        found = one(self.con, f"SELECT {_RUN_COLUMNS} FROM tg.runs WHERE run_id = ?", [run_id])
        return run_row(found) if found else None

    def list_runs(
        self, job: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Newest first (queued_at DESC, then run_id DESC); filters are optional."""
        if limit < 0:
            raise ValueError("limit must be >= 0")
        rows = self.con.execute(
            f"SELECT {_RUN_COLUMNS} FROM tg.runs WHERE (? IS NULL OR job = ?)"
            " AND (? IS NULL OR state = ?) ORDER BY queued_at DESC, run_id DESC LIMIT ?",
            [job, job, state, state, limit],
        ).fetchall()
        return [run_row(row) for row in rows]

    def open_runs(self) -> list[dict[str, Any]]:
        """Runs queued, running or retrying, oldest first: what a restarted Scheduler resumes."""
        rows = self.con.execute(
            f"SELECT {_RUN_COLUMNS} FROM tg.runs WHERE state IN ({_OPEN_PARAMS})"
            " ORDER BY queued_at, run_id",
            list(OPEN_STATES),
        ).fetchall()
        return [run_row(row) for row in rows]

    def watermark(self, job: str) -> datetime | None:
        """Where the job's schedule resumes: its last tick run, or its schedule_from (created,
        resumed, re-enabled, schedule changed) when that is later. None for an unknown job."""
        return self.watermarks([job]).get(job)

    def watermarks(self, jobs: Sequence[str]) -> dict[str, datetime]:
        """`watermark` of each of `jobs` in one query (a Scheduler's boot); unknown jobs are
        left out."""
        rows = self.con.execute(
            "SELECT j.name, greatest(t.last, j.schedule_from) FROM tg.jobs j LEFT JOIN"
            " (SELECT job, max(scheduled_for) AS last FROM tg.runs"
            f" WHERE trigger IN ({TICK_SQL}) AND list_contains(?, job) GROUP BY job) t"
            " ON t.job = j.name WHERE list_contains(?, j.name)",
            [list(jobs), list(jobs)],
        ).fetchall()
        return {str(name): utc(at) for name, at in rows if at is not None}

    def missing_dependents(
        self, edges: list[tuple[str, str, int]]
    ) -> list[tuple[str, str, datetime]]:
        """Successes of an upstream job that have no run of their dependent yet. Each edge is
        (dependent, upstream, place: the upstream's index in the dependent's triggers.after).
        Successes count from the dependent's schedule_from (created, resumed, its triggers
        changed). The dependent's run of one success is scheduled_for that success's
        finished_at + place microseconds, trigger `after:<upstream>`: unique on (job,
        scheduled_for), so creating it twice is a no-op. Returns (dependent, upstream,
        scheduled_for) per missing run, oldest first."""
        if not edges:
            return []
        table = pa.table(
            {
                "dependent": pa.array([e[0] for e in edges], pa.string()),
                "upstream": pa.array([e[1] for e in edges], pa.string()),
                "place": pa.array([e[2] for e in edges], pa.int64()),
            }
        )
        self.con.register("_tg_edges", table)
        try:
            rows = self.con.execute(
                "SELECT e.dependent, e.upstream, u.finished_at + to_microseconds(e.place) AS fire_at"
                " FROM _tg_edges e JOIN tg.jobs j ON j.name = e.dependent"
                " JOIN tg.runs u ON u.job = e.upstream AND u.state = ?"
                " AND u.finished_at >= coalesce(j.schedule_from, j.created_at)"
                " WHERE NOT EXISTS (SELECT 1 FROM tg.runs d WHERE d.job = e.dependent"
                " AND d.scheduled_for = u.finished_at + to_microseconds(e.place))"
                " ORDER BY fire_at, e.place",
                [RunState.SUCCEEDED],
            ).fetchall()
        finally:
            self.con.unregister("_tg_edges")
        return [(str(d), str(up), utc(at)) for d, up, at in rows]

    def last_tick(self, job: str) -> datetime | None:
        """The latest scheduled_for of the job's schedule/catchup runs."""
        row = one(
            self.con,
            f"SELECT max(scheduled_for) FROM tg.runs WHERE job = ? AND trigger IN ({TICK_SQL})",
            [job],
        )
        return utc(row[0]) if row and row[0] is not None else None

    def last_runs(self) -> dict[str, dict[str, Any]]:
        """Each job's newest run (list_runs order), in one query: {job: run}."""
        rows = self.con.execute(
            f"SELECT {_RUN_COLUMNS} FROM tg.runs QUALIFY row_number() OVER"
            " (PARTITION BY job ORDER BY queued_at DESC, run_id DESC) = 1"
        ).fetchall()
        runs = [run_row(row) for row in rows]
        return {run["job"]: run for run in runs}

    def run_counts(self) -> dict[str, int]:
        """Runs per state; every state of CONTRACT §4 is present, 0 when none."""
        counts = dict.fromkeys((state.value for state in RUN_STATES), 0)
        rows = self.con.execute("SELECT state, count(*) FROM tg.runs GROUP BY state").fetchall()
        counts.update({str(state): int(n) for state, n in rows})
        return counts

    def run_totals(self, buckets: Sequence[float]) -> list[dict[str, Any]]:
        """The Scheduler's metric counters at its boot, in one aggregate query: per job and
        ended state, {job, state, runs, rows (rows_loaded summed), durations: {buckets, counts
        (cumulative: finished - started <= bound), sum, count}} over the runs whose start and
        finish are known (succeeded runs only: the run-duration histogram's)."""
        filters = ", ".join("count(d) FILTER (WHERE d <= ?)" for _ in buckets)
        rows = self.con.execute(
            "SELECT job, state, count(*), coalesce(sum(rows_loaded), 0), count(d),"
            f" coalesce(sum(d), 0){', ' if buckets else ''}{filters} FROM (SELECT job, state,"
            " rows_loaded, CASE WHEN state = ? THEN epoch(finished_at) - epoch(started_at)"
            " END AS d FROM tg.runs WHERE state IN (?, ?, ?, ?)) GROUP BY job, state"
            " ORDER BY job, state",
            [
                *buckets,
                RunState.SUCCEEDED,
                RunState.SUCCEEDED,
                RunState.FAILED,
                RunState.CANCELLED,
                RunState.SKIPPED,
            ],
        ).fetchall()
        return [
            {
                "job": str(job),
                "state": str(state),
                "runs": int(runs),
                "rows": int(loaded),
                "durations": {
                    "buckets": list(buckets),
                    "counts": [int(c) for c in counts],
                    "sum": float(total),
                    "count": int(timed),
                },
            }
            for job, state, runs, loaded, timed, total, *counts in rows
        ]

    # -- logs ------------------------------------------------------------------------------

    def add_logs(self, entries: Sequence[tuple[str, datetime, str, str]]) -> None:
        """Append (run_id, ts, level, message) entries in one statement (via Arrow)."""
        if not entries:
            return
        run_ids, stamps, levels, messages = zip(*entries, strict=True)
        batch = pa.table(
            {
                "run_id": pa.array(run_ids, pa.string()),
                "ts": pa.array([aware(ts, "ts") for ts in stamps], pa.timestamp("us", tz="UTC")),
                "level": pa.array(levels, pa.string()),
                "message": pa.array(messages, pa.string()),
            }
        )
        self.con.register("_tg_logs", batch)
        try:
            self.con.execute("INSERT INTO tg.run_logs BY NAME SELECT * FROM _tg_logs")
        finally:
            self.con.unregister("_tg_logs")

    def get_logs(self, run_id: str) -> list[dict[str, Any]]:
        """The run's log lines in ts order (insertion order among equal ts)."""
        rows = self.con.execute(
            "SELECT ts, level, message FROM tg.run_logs WHERE run_id = ? ORDER BY ts, rowid",
            [run_id],
        ).fetchall()
        return [{"ts": utc(ts), "level": level, "message": message} for ts, level, message in rows]

    def last_successes(self) -> dict[str, datetime]:
        """Each job's newest finished_at of a succeeded run: {job: finished_at}."""
        rows = self.con.execute(
            "SELECT job, max(finished_at) FROM tg.runs WHERE state = ? AND finished_at IS NOT"
            " NULL GROUP BY job",
            [RunState.SUCCEEDED],
        ).fetchall()
        return {str(job): utc(at) for job, at in rows}

    def run_checks(self, run_id: str) -> list[dict[str, Any]]:
        """The run's check results in the job's order: [{name, passed, value, on_fail}]."""
        rows = self.con.execute(
            "SELECT name, passed, value, on_fail FROM tg.run_checks WHERE run_id = ?"
            " ORDER BY rowid",
            [run_id],
        ).fetchall()
        keys = ("name", "passed", "value", "on_fail")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    # -- data path (writes.py) -------------------------------------------------------------

    def stage_batch(
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
        """Stage an Arrow batch of the run (a file, store/staging.py); rows staged so far.

        With `checkpoint` (JSON-able dict) and `pages` (pages fetched so far; pass both or
        neither, else ValueError) the run's checkpoint is saved in the same transaction, with
        the rows staged so far. Column types are evolved as in evolve.py; `destination` (the
        target table's name) only labels errors. RunNotFound, IllegalTransition (run no
        longer open), DestinationError (incompatible type change, or DuckDB refused the
        batch): then nothing of the batch or its checkpoint is stored.
        """
        return writes.stage_batch(
            self.con,
            self._staging,
            run_id,
            table,
            checkpoint=checkpoint,
            pages=pages,
            widen_to_varchar=widen_to_varchar,
            destination=destination,
            now=self._now(),
            attempt=attempt,
        )

    def save_checkpoint(
        self, run_id: str, checkpoint: dict[str, Any], pages: int, attempt: int | None = None
    ) -> None:
        """Save the checkpoint after a page that staged no rows (rows: those staged so far)."""
        writes.save_checkpoint(self.con, run_id, checkpoint, pages, self._now(), attempt)

    def checkpoint(self, run_id: str) -> dict[str, Any] | None:
        """{"checkpoint": dict, "pages": int, "rows": int} of an uncommitted run, or None."""
        return progress.load(self.con, run_id)

    def commit_run(self, commit: Commit) -> int:
        """Commit the run's staged rows and `commit.batch`, its cursor (job, value) and
        `succeeded`; rows written.

        One transaction, which also drops the staging and the checkpoint: on DestinationError
        (e.g. an incompatible column type, see evolve.py) nothing changed. Idempotent: a run
        already `succeeded` returns its rows_loaded. A run with nothing staged commits 0 rows:
        append and merge leave the target untouched, a replace empties it (the table becomes
        the run's rows, none; created empty only when the run's columns are known). Merge
        writes rows inserted + updated, the last staged row per key winning.
        The cursor only moves forward (progress.py): a value behind the stored one is ignored.
        With `attempt` (also on stage_batch/save_checkpoint), a write from an attempt other
        than the run's current one raises StaleAttempt: the attempt number fences off an
        engine the scheduler gave up on (lease expired) that is still running.
        """
        try:
            return writes.commit_run(self.con, self._staging, commit, self._now(), clock=self._now)
        finally:
            self._staging.sweep(self.con)

    def begin_attempts(self, begins: list[Begin], engine: str) -> list[Begun | Exception]:
        """Start many runs in one transaction. A run must exist (RunNotFound), be queued or
        running by this same engine (IllegalTransition) and, unless `attempt` is None, be at
        that attempt (StaleAttempt); such errors come back as the item's result, not raised.
        The others become running (started_at, engine) and get a Begun: the run's checkpoint
        as `resume` (None: none), the job's cursor when `incremental` (else None), the start;
        one without checkpoint loses its leftover staging (discard_run)."""
        try:
            return batched.begin_attempts(self.con, begins, engine, self._now())
        finally:
            self._staging.sweep(self.con)

    def commit_runs(self, commits: list[Commit]) -> list[int | Exception]:
        """Group commit: per Commit, rows written or the exception (not raised), as if
        committed one by one in order. Append commits with a batch and no staging share one
        transaction per table (one INSERT, one UPDATE); if it fails, they commit one by one;
        the rest go one by one."""
        try:
            return batched.commit_runs(self.con, self._staging, commits, self._now(), self._now)
        finally:
            self._staging.sweep(self.con)

    def discard_run(self, run_id: str) -> None:
        """Drop the run's staging and checkpoint (no-op when none): the run restarts afresh."""
        try:
            writes.discard(self.con, run_id)
        finally:
            self._staging.sweep(self.con)

    def discard_orphans(self, open_run_ids: set[str]) -> int:
        """Drop staging and checkpoints of runs not in `open_run_ids`; how many runs."""
        try:
            return writes.discard_orphans(self.con, set(open_run_ids))
        finally:
            self._staging.sweep(self.con)

    def staged_rows(self, run_id: str) -> int:
        return writes.staged_rows(self.con, run_id)

    def staged_run_ids(self) -> list[str]:
        """Runs that have staging (leftovers to discard after a crash)."""
        return writes.staged_run_ids(self.con)

    def save_refresh_token(self, job: str, token: str, origin: str) -> None:
        """Keep an oauth2 refresh token the server rotated to, for the job's next run (never
        readable by a query: the tg.state view leaves it out)."""
        progress.save_refresh_token(self.con, job, token, origin, self._now())

    def cursor(self, job: str) -> str | None:
        row = one(self.con, "SELECT cursor FROM tg.state WHERE job = ?", [job])
        return str(row[0]) if row and row[0] is not None else None

    # -- tables (tables.py) -----------------------------------------------------------------

    def list_tables(self) -> list[dict[str, Any]]:
        """Data tables of schema main: [{name, rows, columns: [{name, type}]}] by name."""
        return tables.list_tables(self.con)

    def preview_table(self, name: str, limit: int = 50) -> dict[str, Any]:
        """First `limit` rows as JSON-ready values: {columns: [names], rows: [[values]]}."""
        return tables.preview_table(self.con, name, limit)

    def rows_loaded_total(self) -> int:
        """Rows committed by the runs still in tg.runs (the /metrics counter)."""
        # fetchall: a result left half-read would block the connection's next statement
        ((total,),) = self.con.execute(
            "SELECT coalesce(sum(rows_loaded), 0) FROM tg.runs"
        ).fetchall()
        return int(total)

    def loaded_since(self, days: int, limit: int = 5000) -> list[dict[str, Any]]:
        """Rows loaded per succeeded run over the last `days` days, oldest first (at most the
        newest `limit` runs): [{finished_at, job, rows}] for the UI's chart."""
        rows = self.con.execute(
            "SELECT finished_at, job, rows_loaded FROM tg.runs WHERE state = ?"
            " AND finished_at >= now() - to_days(?) ORDER BY finished_at DESC LIMIT ?",
            [RunState.SUCCEEDED, days, limit],
        ).fetchall()
        return [{"finished_at": ts, "job": job, "rows": int(n)} for ts, job, n in reversed(rows)]

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of one SQL statement: for tests, benchmarks and diagnostics inside the
        process that owns the file (never exposed over HTTP)."""
        return self.con.execute(sql, params or []).fetchall()

    def cancel_run(self, run_id: str) -> bool:
        """Mark an open run `cancelled`, atomically: False when it had already ended (e.g. its
        commit won the race), and then nothing changes. Its staging goes with discard_run."""
        rows = self.con.execute(
            "UPDATE tg.runs SET state = ?, finished_at = ? WHERE run_id = ?"
            f" AND state IN ({OPEN_SQL}) RETURNING run_id",
            [RunState.CANCELLED, self._now(), run_id],
        ).fetchall()
        return bool(rows)

    # -- housekeeping (retention.py) ------------------------------------------------------

    def discard_closed_staging(self) -> int:
        """Drop staging and checkpoints of every run that is not open (queued, running,
        retrying): a run cancelled before pick-up or by its job's deletion leaves none."""
        try:
            return retention.discard_closed_staging(self.con)
        finally:
            self._staging.sweep(self.con)

    def prune_history(
        self, run_retention: float | None, log_retention: float | None
    ) -> dict[str, int]:
        """Delete finished runs older than `run_retention` seconds (by finished_at) with
        their logs, and logs of runs older than `log_retention`; None keeps them for ever.
        Never an open run, nor a job's newest run or newest tick. {"runs": n, "logs": n}."""
        try:
            return retention.prune_history(
                self.con,
                self._now(),
                None if run_retention is None else timedelta(seconds=run_retention),
                None if log_retention is None else timedelta(seconds=log_retention),
            )
        finally:
            self._staging.sweep(self.con)
