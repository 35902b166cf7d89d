"""The actors' faces: what each one promises its callers (apscheduler's abc.py style).

Callers hold `interfaces.X`, never a Ray handle: `db: Database = face(handle)`
(tg_actors/peer.py), so mypy strict checks every call that crosses a process. Each actor's
class is checked against its Protocol where it is defined (a TYPE_CHECKING assignment in its
actor.py), so the two cannot drift apart.

What holds for every method here:
- it is a coroutine; an error the actor raises reaches the caller as itself (our error tree,
  tg_actors/errors.py); an actor that is down or restarting raises PeerUnavailable;
- calls from one caller to one actor run in the order they were made; the Database runs
  every DuckDB call on one thread, so its writes are serialised;
- "idempotent" means: repeated after a lost answer, the call changes nothing more and
  answers the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from tg_actors.runstate import RunState, Trigger

if TYPE_CHECKING:
    import pyarrow as pa

    from tg_actors.attempts import Begin, Begun, Commit
    from tg_actors.messages import Message, TriggerRun


@dataclass(frozen=True, slots=True)
class Upserted:
    """One job stored by `Database.upsert_jobs`: created (not replaced), and its paused flag
    as stored (a replace keeps it)."""

    name: str
    created: bool
    paused: bool


@dataclass(frozen=True)
class Received:
    """A command as `tg.commands` keeps it: no body, no secret."""

    command_id: str
    kind: str
    job: str | None
    who: str
    received_at: datetime


@dataclass(frozen=True)
class Answered:
    """A command's outcome (human text, secrets masked) and, when the answer is final, the
    reply as JSON text (`to_json`) for the command sent again."""

    received: Received
    answered_at: datetime
    outcome: str
    reply: str | None


class Database(Protocol):
    """The one DuckDB writer (store/actor.py over store/duckdb.py). Every run change is a
    conditional update on (run_id, attempt, from-state): DuckDB is the arbiter of the
    run-lifecycle protocol (docs/RELIABILITY.md)."""

    async def upsert_job(self, name: str, spec: dict[str, Any], origin: str) -> bool:
        """Store the job's stored form; True if created. A replace keeps paused and created_at;
        a new job, or a change of its schedule, `enabled` or `triggers`, moves schedule_from
        to now (see watermark)."""
        ...

    async def upsert_jobs(
        self, jobs: Sequence[tuple[str, dict[str, Any]]], origin: str
    ) -> list[Upserted]:
        """`upsert_job` for each (name, spec) in one transaction, in order."""
        ...

    async def delete_job(self, name: str) -> bool:
        """Remove the job; its runs (and its cursor in tg.state) stay. True if it existed."""
        ...

    async def get_job(self, name: str) -> dict[str, Any] | None: ...

    async def get_jobs(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored jobs among `names` in one call: {name: row}, a missing one left out."""
        ...

    async def list_jobs(self) -> list[dict[str, Any]]: ...

    async def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        """Set the flag and return the job; raises JobNotFound."""
        ...

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
        """Write a new run; its run_id, or None when (job, scheduled_for) already has one."""
        ...

    async def update_run(
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
        transition table (core/runstate.py) from `expect_state`."""
        ...

    async def get_run(self, run_id: str) -> dict[str, Any] | None: ...

    async def list_runs(
        self, job: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Newest first (queued_at DESC, then run_id DESC); filters are optional."""
        ...

    async def open_runs(self) -> list[dict[str, Any]]:
        """Runs queued, running or retrying, oldest first: what a restarted Scheduler resumes."""
        ...

    async def last_tick(self, job: str) -> datetime | None:
        """The latest scheduled_for of the job's schedule/catchup runs."""
        ...

    async def watermark(self, job: str) -> datetime | None:
        """Where the job's schedule resumes: its last tick run, or its schedule_from (created,
        resumed, re-enabled, schedule changed) when that is later. None for an unknown job."""
        ...

    async def watermarks(self, jobs: Sequence[str]) -> dict[str, datetime]:
        """`watermark` of each of `jobs` in one query; unknown jobs are left out."""
        ...

    async def job_versions(self) -> dict[str, tuple[datetime, bool]]:
        """{name: (updated_at, paused)} of every job: what the Scheduler compares against the
        jobs it holds, to reconcile changes whose message the broker lost."""
        ...

    async def missing_dependents(
        self, edges: list[tuple[str, str, int]]
    ) -> list[tuple[str, str, datetime]]:
        """Successes of an upstream job that have no run of their dependent yet. Each edge is
        (dependent, upstream, place: the upstream's index in the dependent's triggers.after).
        Successes count from the dependent's schedule_from (created, resumed, its triggers
        changed). The dependent's run of one success is scheduled_for that success's
        finished_at + place microseconds, trigger `after:<upstream>`: unique on (job,
        scheduled_for), so creating it twice is a no-op. Returns (dependent, upstream,
        scheduled_for) per missing run, oldest first."""
        ...

    async def run_counts(self) -> dict[str, int]:
        """Runs per state; every state of CONTRACT §4 is present, 0 when none."""
        ...

    async def last_runs(self) -> dict[str, dict[str, Any]]:
        """Each job's newest run (list_runs order), in one query: {job: run}."""
        ...

    async def run_totals(self, buckets: Sequence[float]) -> list[dict[str, Any]]:
        """Ended runs in one aggregate query (the Scheduler seeds its metric counters with it
        once, at boot): per job and ended state, {job, state, runs, rows, durations: {buckets,
        counts (cumulative), sum, count}}, durations (finished_at - started_at, seconds) of
        succeeded runs only; ordered by job, then state."""
        ...

    async def commands_received(self, rows: Sequence[Received]) -> None:
        """Audit rows of commands read on `commands` (store/commands.py). Idempotent."""
        ...

    async def commands_answered(self, answers: Sequence[Answered]) -> None:
        """The outcomes of commands applied; a final reply is never replaced. Idempotent."""
        ...

    async def command_replies(self, command_ids: Sequence[str]) -> dict[str, str]:
        """{command_id: reply JSON} of those with a final answer."""
        ...

    async def list_commands(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The audit log, newest first: {command_id, kind, job, who, received_at,
        answered_at, outcome}."""
        ...

    async def add_logs(self, entries: Sequence[tuple[str, datetime, str, str]]) -> None:
        """Append (run_id, ts, level, message) entries in one statement (via Arrow)."""
        ...

    async def get_logs(self, run_id: str) -> list[dict[str, Any]]:
        """The run's log lines in ts order (insertion order among equal ts)."""
        ...

    async def run_checks(self, run_id: str) -> list[dict[str, Any]]:
        """The run's check results in the job's order: [{name, passed, value, on_fail}]."""
        ...

    async def last_successes(self) -> dict[str, datetime]:
        """Each job's newest finished_at of a succeeded run: {job: finished_at}."""
        ...

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
        """Stage an Arrow batch of the run (a file, store/staging.py); rows staged so far.

        With `checkpoint` (JSON-able dict) and `pages` (pages fetched so far; pass both or
        neither, else ValueError) the run's checkpoint is saved in the same transaction, with
        the rows staged so far. Column types are evolved as in evolve.py; `destination` (the
        target table's name) only labels errors. RunNotFound, IllegalTransition (run no
        longer open), DestinationError (incompatible type change, or DuckDB refused the
        batch): then nothing of the batch or its checkpoint is stored."""
        ...

    async def commit_run(self, commit: Commit) -> int:
        """Commit the run (tg_actors/attempts.py): its staged rows and `commit.batch`, its
        cursor (job, value) and `succeeded`, in one transaction, which also drops the staging
        and the checkpoint; rows written. Raises this run's own error only: RunNotFound,
        IllegalTransition (no longer open, e.g. cancelled), StaleAttempt (`attempt` is not the
        run's current one: the fence), DestinationError (e.g. an incompatible column type, see
        evolve.py), and then nothing changed. Idempotent: a run already `succeeded` returns its
        rows_loaded. A run with nothing staged commits 0 rows: append and merge leave the
        target untouched, a replace empties it. Merge writes rows inserted + updated, the last
        staged row per key winning. The cursor only moves forward (progress.py). Concurrent
        commits (of every engine) are grouped into one DuckDB transaction per target table
        where they can be (append, a batch, no staging), with the outcome of committing them
        one by one in arrival order; one bad run never fails the others. With `export`, the
        table's export file is rewritten after the commit (store/export.py), off the writer's
        thread and not awaited: its outcome is a line in the run's logs, never its error."""
        ...

    async def discard_run(self, run_id: str) -> None:
        """Drop the run's staging and checkpoint (no-op when none): the run restarts afresh."""
        ...

    async def save_refresh_token(self, job: str, token: str, origin: str) -> None:
        """Keep the oauth2 refresh token the server rotated to (`origin`: the digest of the
        job's own it descends from) for the job's next run; no query can read it."""
        ...

    async def staged_rows(self, run_id: str) -> int: ...

    async def save_checkpoint(
        self, run_id: str, checkpoint: dict[str, Any], pages: int, attempt: int | None = None
    ) -> None:
        """Save the checkpoint after a page that staged no rows (rows: those staged so far)."""
        ...

    async def checkpoint(self, run_id: str) -> dict[str, Any] | None:
        """{"checkpoint": dict, "pages": int, "rows": int} of an uncommitted run, or None."""
        ...

    async def discard_orphans(self, open_run_ids: set[str]) -> int:
        """Drop staging and checkpoints of runs not in `open_run_ids`; how many runs."""
        ...

    async def staged_run_ids(self) -> list[str]:
        """Runs that have staging (leftovers to discard after a crash)."""
        ...

    async def cancel_run(self, run_id: str) -> bool:
        """Mark an open run `cancelled`, atomically: False when it had already ended (e.g. its
        commit won the race), and then nothing changes. Its staging goes with discard_run."""
        ...

    async def list_tables(self) -> list[dict[str, Any]]:
        """Data tables of schema main: [{name, rows, columns: [{name, type}]}] by name."""
        ...

    async def preview_table(self, name: str, limit: int = 50) -> dict[str, Any]:
        """First `limit` rows as JSON-ready values: {columns: [names], rows: [[values]]}."""
        ...

    async def sql(
        self,
        sql: str,
        params: list[Any] | None = None,
        limit: int | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One read-only query over the live database (tg_actors/queries.py says what may run),
        `params` bound to its `?` / `$1` placeholders: {"columns": [{"name", "type"}],
        "rows": [[...]] (JSON-ready, as preview_table's), "row_count", "truncated",
        "elapsed_ms"}. At most min(limit, TG_SQL_MAX_ROWS) rows, `truncated` when the result
        has more. It reads one snapshot on a cursor and thread of its own: it never waits for
        a commit, nor a commit for it. Raises QueryRefused (not a read-only statement over
        the tables it may read), QueryFailed (DuckDB's error, e.g. an unknown column),
        QueryTimeout (interrupted after min(timeout, TG_SQL_TIMEOUT) seconds of DuckDB work),
        TooManyQueries (TG_SQL_CONCURRENCY queries, streams included, run already). Changes
        nothing, so it is idempotent."""
        ...

    def sql_batches(
        self,
        sql: str,
        params: list[Any] | None = None,
        limit: int | None = None,
        *,
        timeout: float | None = None,
        fit: Literal["arrow", "csv", "parquet"] = "arrow",
        batch_rows: int = 65_536,
    ) -> AsyncIterator[pa.RecordBatch]:
        """The same query's whole result (or its first `limit` rows) as Arrow record
        batches of up to `batch_rows` rows, streamed (an actor generator: over Ray an
        ObjectRefGenerator of one batch per ref, so no side holds the whole result; callers
        use the handle, not `face`: serve/sql.py). TG_SQL_MAX_ROWS does not apply. The
        first batch is empty and carries the schema: it comes once the query is checked and
        bound, so the errors of `sql` are raised before any row; QueryTimeout can also end
        the stream later (TG_SQL_TIMEOUT counts DuckDB's work, not the reader's pace).
        `fit`: the format the batches will be written as; columns it cannot hold come as
        DuckDB's text of them (csv: lists, structs, maps, blobs, intervals...; parquet:
        intervals, unions). Stopping early interrupts the query and frees its slot."""
        ...

    async def cursor(self, job: str) -> str | None: ...

    async def create_runs(self, runs: list[dict[str, Any]]) -> list[str | None]:
        """Many create_run entries in one statement (job, scheduled_for, trigger, state,
        priority, optional minted run_id): run_id or None per entry, in order (None: the tick
        is held by another run). Idempotent for minted ids. Concurrent calls are grouped into
        one DuckDB transaction."""
        ...

    async def begin_attempt(self, begin: Begin, engine: str) -> Begun:
        """Start the run for `engine` (`running`, started_at, engine): a Begun with its
        checkpoint as `resume` (None: none, and its leftover staging is dropped), the job's
        committed cursor when `begin.incremental`, and started_at. Raises this run's own error
        only: RunNotFound; IllegalTransition when it is neither `queued` nor this same
        engine's own `running` one (a begin repeated after a lost answer goes through, so it
        is idempotent for its engine); StaleAttempt when `begin.attempt` is not the run's.
        Concurrent begins (of every engine) are grouped into one DuckDB transaction."""
        ...

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
        """The run failed for good, conditional like update_run (IllegalTransition,
        StaleAttempt, RunNotFound); its staging and checkpoint go in the same transaction, and
        only when the change was made."""
        ...

    async def rows_loaded_total(self) -> int:
        """Rows committed by the runs still in tg.runs (the /metrics counter)."""
        ...

    async def loaded_since(self, days: int, limit: int = 5000) -> list[dict[str, Any]]:
        """[{finished_at, job, rows}] of succeeded runs over the last `days` days, oldest
        first."""
        ...

    async def housekeeping(self) -> dict[str, int]:
        """One pass: drop closed runs' staging, delete runs and logs past their retention:
        {"staging": n, "runs": n, "logs": n}. Safe to repeat."""
        ...

    async def stats(self) -> dict[str, dict[str, int]]:
        """Grouped calls so far: {kind: {"batches": n, "items": n}}."""
        ...

    async def start(self) -> None:
        """Return once booted (the status subscription runs); waits out a boot retried."""
        ...

    async def ping(self) -> str:
        """Returns "ok" once booted, else "booting"."""
        ...

    async def path(self) -> str:
        """The DuckDB file's path."""
        ...

    async def close(self) -> None:
        """Stop consuming, checkpoint and close the file. Idempotent."""
        ...


class ConfigManager(Protocol):
    """Validates jobs, persists them through the Database, announces changes on `config`."""

    async def validate(self, data: dict[str, Any] | str, name: str | None = None) -> dict[str, Any]:
        """What `upsert` would store, as the public job (secrets masked); stores nothing.
        JobValidationError with every problem by field path."""
        ...

    async def parse(self, data: dict[str, Any] | str, name: str | None = None) -> dict[str, Any]:
        """What `upsert` would store, as stored: `${NAME}` references, `***` restored to the
        stored job's; stores nothing. For a test read of an unsaved job. JobValidationError."""
        ...

    async def upsert(self, data: dict[str, Any] | str, name: str | None = None) -> dict[str, Any]:
        """Validate and store a job (dict or YAML text): {"created": bool, "job": public job}.
        JobValidationError stores nothing. Idempotent: the same job again is not "created"."""
        ...

    async def delete(self, name: str) -> bool:
        """Remove the job (its runs and cursor stay); JobNotFound when there is none."""
        ...

    async def get(self, name: str) -> dict[str, Any]:
        """The public job; JobNotFound."""
        ...

    async def list(self) -> list[dict[str, Any]]:
        """Every public job, by name."""
        ...

    async def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        """Pause or resume the job's schedule: the public job; JobNotFound. Idempotent."""
        ...

    async def load_dir(self) -> dict[str, Any]:
        """Load every file of the jobs folder: {"loaded": [...], "errors": [...]}."""
        ...

    async def settings(self) -> dict[str, Any]:
        """The settings it runs with (secrets masked)."""
        ...

    async def ping(self) -> str:
        """Returns "ok" once booted, else "booting"."""
        ...


class Scheduler(Protocol):
    """Triggers, the TaskQueue and the StateManager: decides which runs exist and who runs
    them; every decision is written to DuckDB before it is announced."""

    async def trigger(
        self, job: str, priority: int | None = None, trigger: str = Trigger.MANUAL
    ) -> str:
        """Queue a run of `job` now: its run_id, once the run exists in DuckDB. JobNotFound."""
        ...

    async def backfill(self, job: str, start: datetime, end: datetime) -> str:
        """Queue a run over [start, end) that moves no cursor or window (trigger `backfill`):
        its run_id. JobNotFound; BackfillRefused (planning.backfill_problem)."""
        ...

    async def refresh(self, job: str) -> str:
        """Queue a full re-read that replaces the table and resets the cursors on success
        (trigger `refresh`): its run_id. JobNotFound."""
        ...

    async def cancel(self, run_id: str) -> str:
        """Cancel a queued, retrying or running run ("cancelled"); nothing of it is committed.
        RunNotFound; IllegalTransition when the run had already ended (its commit won)."""
        ...

    async def job_status(self, name: str | None = None) -> dict[str, dict[str, Any]]:
        """{job: {paused, next_run_at, active_runs}} for one job or all."""
        ...

    async def status(self) -> dict[str, Any]:
        """{"slots", "running", "queue_depth", ...}: capacity and load now."""
        ...

    async def metrics(self) -> dict[str, Any]:
        """Queue depth, retries waiting, engines, slots, runs in flight, jobs, and the trigger
        lateness histogram, for /metrics."""
        ...

    async def set_engines(self, engines: list[Any]) -> int:
        """The engines changed: capacity follows; returns it."""
        ...

    async def engine_lost(
        self, engine_id: str, reason: str, runs: list[str] | None = None
    ) -> list[str]:
        """Every run the engine held fails this attempt now and is retried per its policy;
        returns their ids. Idempotent."""
        ...

    async def tick_once(self) -> None:
        """One turn of the loop (tests): fire due ticks, release retries, expire leases,
        reconcile, dispatch."""
        ...

    async def start(self) -> dict[str, int]:
        """Return once jobs and open runs are reloaded and the loops run. Idempotent."""
        ...

    async def stop(self, grace: float = 10.0) -> dict[str, int]:
        """Dispatch nothing more, give running runs `grace` seconds, put the rest back to
        `queued`: {"finished": n, "requeued": n}."""
        ...

    async def ping(self) -> str:
        """Returns "ok" once booted, else "booting"."""
        ...


class EnginePool(Protocol):
    """Owns the SyncEngine actors; changes how many there are at run time."""

    async def scale(self, count: int, grace: float | None = None) -> dict[str, Any]:
        """Add or remove engines until there are `count` (1..MAX_ENGINES, else ValueError;
        NoCapacity when the cluster cannot place them): {"added", "removed", "interrupted",
        "engines"}. Idempotent for the same count."""
        ...

    async def describe(self) -> list[dict[str, Any]]:
        """Each engine: name, node, slots and the runs it holds (or why it did not answer)."""
        ...

    async def names(self) -> list[str]:
        """The engines' actor names."""
        ...

    async def peers(self) -> list[Any]:
        """The engines as Peers (picklable, looked up by name), for the Scheduler."""
        ...

    async def ping(self) -> str:
        """Returns "ok"."""
        ...


class Broker(Protocol):
    """Topics with consumer groups over Ray queues: every group of a topic gets every
    message, in publish order per publisher; a shared group's members split them."""

    async def publish(
        self, topic: str, messages: list[Message], timeout: float | None = None
    ) -> int:
        """Deliver to every group of `topic`: how many groups got the batch. BrokerFull when
        a bounded group stayed full past `timeout`."""
        ...

    async def consume(
        self, topic: str, group: str, max_items: int = 100, timeout: float = 1.0
    ) -> list[Any]:
        """Up to `max_items` messages of the group, waiting at most `timeout` for the first."""
        ...

    async def subscribe(
        self,
        topic: str,
        group: str,
        *,
        shared: bool = False,
        maxsize: int | None = None,
        lossy: bool = False,
    ) -> Any:
        """Join `group` on `topic` (idempotent); a shared group returns the queue its members
        read."""
        ...

    async def unsubscribe(self, topic: str, group: str) -> None:
        """Drop a group whose member is gone for good. Idempotent."""
        ...

    async def stats(self) -> dict[str, Any]:
        """Queue depths per topic and group."""
        ...

    async def request(self, topic: str, message: Any, key: str, timeout: float) -> tuple[str, Any]:
        """Publish `message`, then wait up to `timeout` for the answer posted under `key`
        (the reply mailbox): ("answered", answer) | ("nobody", None) | ("timeout", None)."""
        ...

    async def reply(self, answers: list[tuple[str, Any]]) -> int:
        """Post each (key, answer) to the callers waiting on the key; how many got one."""
        ...

    async def ping(self) -> str:
        """Returns "ok"."""
        ...


class RateLimiter(Protocol):
    """One reservation book per job, shared by every engine that calls it."""

    async def reserve(self, key: str, per_second: float) -> float:
        """Take the next slot of `key`'s budget: seconds to wait before the request."""
        ...

    async def ping(self) -> str:
        """Returns "ok"."""
        ...


class Engine(Protocol):
    """One SyncEngine: takes TriggerRun messages from the shared work queue."""

    async def run(self, message: TriggerRun) -> Any:
        """Run one attempt now (tests and benches): the engine's SyncResult, or None when the
        attempt was not begun (fenced off)."""
        ...

    async def stats(self) -> dict[str, Any]:
        """Name, node, slots, runs done and the runs it holds."""
        ...

    async def drain(self, grace: float | None = None) -> list[str]:
        """Take nothing more; give held runs `grace` seconds: the ids still held after."""
        ...

    async def start(self) -> None:
        """Return once it consumes its queue."""
        ...

    async def stop(self) -> None:
        """Stop consuming. Idempotent."""
        ...

    async def ping(self) -> str:
        """Returns "ok"."""
        ...
