"""Scheduler actor: trigger mechanism, TaskQueue and StateManager wired to the broker.

Each tick: for every enabled, unpaused job, the ticks due since its watermark (scheduler.schedule,
with the catch-up policy) become runs in `tg.runs` (unique on job + scheduled_for) and enter
the TaskQueue; then queued runs are dispatched on the `triggers` topic while engines are free.
Engine events on `status` drive the run states. Truth is DuckDB: a restart reloads jobs and
open runs from it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tg_actors import interfaces
from tg_actors.broker.client import BrokerClient
from tg_actors.coalesce import Coalescer
from tg_actors.commands.desk import SCHEDULER_KINDS, CommandDesk
from tg_actors.errors import BackfillRefused, IllegalTransition, JobNotFound, RunNotFound
from tg_actors.jobs import AlertOn, JobSpec
from tg_actors.lifecycle import Boot
from tg_actors.messages import (
    TOPIC_COMMANDS,
    TOPIC_CONFIG,
    TOPIC_CONTROL,
    TOPIC_STATUS,
    TOPIC_TRIGGERS,
    CancelRun,
    EngineStarted,
    JobDeleted,
    JobPauseChanged,
    JobRecovered,
    JobStale,
    JobUpserted,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunHeartbeat,
    RunProgressed,
    RunStarted,
    TriggerRun,
    utcnow,
)
from tg_actors.metrics import Histogram
from tg_actors.names import SCHEDULER_GROUP, SCHEDULER_LEASE_GROUP
from tg_actors.peer import face
from tg_actors.runstate import TERMINAL, RunState, Trigger, after_trigger, backfill_trigger
from tg_actors.scheduler.alerts import check_failed, job_recovered, job_stale
from tg_actors.scheduler.commands import apply_command
from tg_actors.scheduler.counters import RunCounters
from tg_actors.scheduler.engines import Fleet
from tg_actors.scheduler.error_handler import ErrorHandler
from tg_actors.scheduler.freshness import Freshness, wants
from tg_actors.scheduler.inflight import InFlight
from tg_actors.scheduler.planning import (
    FireTimes,
    JobEntry,
    NewTick,
    backfill_problem,
    dependency_edges,
    dependents_of,
    due_runs,
    group_triggers,
    plan_runs,
    start_at,
)
from tg_actors.scheduler.states import (
    DB_RETRY_S,
    PUBLISH_RETRY_S,
    NewRun,
    StateManager,
    TrackedRun,
    new_run_id,
)
from tg_actors.scheduler.taskqueue import QueuedRun, TaskQueue

log = logging.getLogger(__name__)
AGING_EVERY = timedelta(seconds=5)  # a waiting run gains a priority point every 5 s
RECONCILE_S = 5.0  # how often jobs and open runs are checked against DuckDB
GROUP, LEASE_GROUP = SCHEDULER_GROUP, SCHEDULER_LEASE_GROUP  # its consumer groups
GROUPS = (
    (TOPIC_CONFIG, GROUP),
    (TOPIC_STATUS, GROUP),
    (TOPIC_STATUS, LEASE_GROUP),
    (TOPIC_COMMANDS, GROUP),
)


class Scheduler:
    def __init__(
        self,
        db: Any,
        broker: Any,
        engines: list[Any],
        tick_seconds: float = 0.2,
        schedules: bool = True,
        lease_seconds: float = 30.0,
        alert_webhook_url: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        slots: int = 1,
        pool: Any = None,
        *,
        run_loops: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        new_id: Callable[[], str] = new_run_id,
        reconcile_seconds: float = RECONCILE_S,
        db_retry_s: float = DB_RETRY_S,
        publish_retry_s: float = PUBLISH_RETRY_S,
        alert_format: str = "json",
    ) -> None:
        self._db: interfaces.Database = face(db)
        self._broker = BrokerClient(broker)
        # the EnginePool: the engines of now (they change at run time)
        self._pool: interfaces.EnginePool | None = face(pool) if pool is not None else None
        self._tick_seconds = tick_seconds
        self._now = clock
        self._jobs: dict[str, JobEntry] = {}
        self._queue = TaskQueue()
        self._states = StateManager(
            self._db,
            self._broker,
            db_retry_s=db_retry_s,
            publish_retry_s=publish_retry_s,
            new_id=new_id,
        )
        # ticks after this instant fell while we were up: on time however late they are handled
        self._up_since = clock()
        self._reconcile_s = reconcile_seconds
        self._reconciled_at = monotonic()
        self._versions: dict[str, tuple[Any, bool]] = {}  # job -> (updated_at, paused) loaded
        self._minted: dict[tuple[str, datetime], str] = {}  # tick -> run_id until inserted
        self._rng = rng or random.Random()
        self._mono = monotonic
        self._aged_at = monotonic()
        self._freshness = Freshness()  # stale jobs, recoveries (scheduler/freshness.py)
        self._successes_loaded = False  # DuckDB's last successes read into it
        self._errors = ErrorHandler(
            self._states,
            rng=self._rng,
            alert_webhook_url=alert_webhook_url,
            alert_format=alert_format,
            gave_up=self._gave_up,
        )
        # ended runs, rows, durations, HTTP codes: seeded at boot, then moved by run ends
        self._counters = RunCounters()
        self._checks_failed: dict[str, int] = {}  # job -> check results that did not pass
        self._in_flight = InFlight(lease_seconds, monotonic)  # handed to engines, not ended
        # the engines and capacity, and the runs of lost, silent or removed engines
        self._fleet = Fleet(
            self._db,
            self._in_flight,
            self._states,
            self._errors,
            lambda: self._queue,  # the current one: _start replaces it
            self._spec_of,
            clock,
            slots=slots,
            ended=self._counters.ended,
        )
        self._fleet.set_engines([face(e) for e in engines])
        self._fires = FireTimes()
        self._dependents: dict[str, list[str]] | None = None  # job -> jobs it triggers
        self._wake = asyncio.Event()  # something new to do before the next planned wake-up
        self._manual: Coalescer[tuple[str, int | None, str], str] = Coalescer(self._trigger_many)
        # the API's and the UI's triggers and cancels (`commands`), applied once per id
        self._desk = CommandDesk(
            SCHEDULER_KINDS,
            lambda command: apply_command(self, command, self._job_of),
            self._db,
            self._broker.reply_all,
            together=True,
        )
        self._lateness = Histogram()  # started - scheduled_for, seconds
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._schedules = schedules
        # run_loops=False: the caller drives tick_once() and the handlers (the simulation)
        self._run_loops = run_loops
        self._boot = Boot(self._start, autostart=run_loops)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> dict[str, int]:
        """Wait until jobs and open runs are reloaded and the loops run. Idempotent."""
        await self._boot.wait()
        return {"jobs": len(self._jobs), "queued": len(self._queue)}

    async def _start(self) -> None:
        """Reload jobs and open runs from DuckDB, subscribe, start ticking (also after a restart)."""
        for topic, group in GROUPS:
            await self._broker.subscribe(topic, group)
        if self._pool is not None:  # after a restart the engines may not be those we began with
            try:
                self._fleet.set_engines([face(e) for e in await self._pool.peers()])
            except Exception:  # the pool restarting: it tells us the engines once it is back
                log.warning(
                    "engine pool unavailable; keeping %d engine(s)", len(self._fleet.engines)
                )
        async with self._lock:
            self._jobs.clear()
            self._queue = TaskQueue()
            self._in_flight.clear()
            for run in self._states.active():  # a boot tried again starts from DuckDB afresh
                self._states.forget(run.run_id)
            rows = await self._db.list_jobs()
            marks = await self._db.watermarks([row["name"] for row in rows])  # one query
            for row in rows:
                name = row["name"]
                await self._load_job(name, row["spec"], bool(row["paused"]), marks.get(name))
                self._versions[name] = (row["updated_at"], bool(row["paused"]))
            await self._fleet.recover_open_runs()
            if not self._counters.seeded:  # once: what ended before we (re)started
                self._counters.seed(await self._db.run_totals(self._counters.buckets))
            await self._reconcile_dependents()
            await self._states.flush()
        if not self._run_loops:
            return
        self._tasks = [
            asyncio.create_task(
                self._broker.pump_batches(TOPIC_CONFIG, GROUP, self._on_config, self._stop)
            ),
            asyncio.create_task(
                self._broker.pump_batches(TOPIC_STATUS, GROUP, self._on_status, self._stop)
            ),
            asyncio.create_task(
                self._broker.pump(TOPIC_STATUS, LEASE_GROUP, self._on_sign_of_life, self._stop)
            ),
            asyncio.create_task(
                self._broker.pump_batches(TOPIC_COMMANDS, GROUP, self._desk.on_batch, self._stop)
            ),
            asyncio.create_task(self._tick_loop()),
        ]

    async def stop(self, grace: float = 10.0) -> dict[str, int]:
        """Graceful stop: dispatch nothing more, give running runs `grace` seconds to end,
        then put the ones still running back to `queued` (they run again at the next start,
        and nothing of them was committed). Returns {"finished": n, "requeued": n}."""
        self._schedules = False
        self._fleet.stop_dispatching()  # events of running runs are still handled
        deadline = asyncio.get_running_loop().time() + grace
        before = len(self._in_flight)
        while self._in_flight and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        async with self._lock:
            requeued = list(self._in_flight)
            for run_id in requeued:
                run = self._states.get(run_id)
                if run is not None and run.state is RunState.RUNNING:
                    # a new attempt: the interrupted one can never commit after all
                    await self._states.move(run_id, RunState.QUEUED, attempt=run.attempt + 1)
                log.info("run %s interrupted by shutdown: queued for the next start", run_id)
            self._in_flight.clear()
            await self._states.flush()
        await self._errors.drain_alerts()  # alerts still queued go out before we stop
        await self._desk.flush()  # and the records of the commands answered
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        return {"finished": before - len(requeued), "requeued": len(requeued)}

    async def ping(self) -> str:
        """ "ok" once booted (jobs and open runs reloaded, loops running), else "booting"."""
        return "ok" if self._boot.done else "booting"

    # -- scheduler API ----------------------------------------------------------------------

    async def trigger(
        self, job: str, priority: int | None = None, trigger: str = Trigger.MANUAL
    ) -> str:
        """Queue a run of `job` now (external trigger). Returns its run_id. Concurrent calls
        share one insert and one dispatch (a burst of triggers costs a few round trips)."""
        return await self._manual.submit((job, priority, trigger))

    async def backfill(self, job: str, start: datetime, end: datetime) -> str:
        """Queue a run of `job` over [start, end) that leaves its cursors and windows alone
        (trigger `backfill`; the range is written with the run). JobNotFound;
        BackfillRefused when the job cannot bound such a run (planning.backfill_problem)."""
        async with self._lock:
            await self._learn([job])
            entry = self._jobs.get(job)
        if entry is None:
            raise JobNotFound(job)
        problem = backfill_problem(entry.spec, start, end)
        if problem is not None:
            raise BackfillRefused(problem)
        return await self.trigger(job, None, backfill_trigger(start, end))

    async def refresh(self, job: str) -> str:
        """Queue a full re-read of `job` (trigger `refresh`): stored cursors and windows are
        ignored; its commit replaces the table and resets them. JobNotFound."""
        return await self.trigger(job, None, Trigger.REFRESH)

    async def _trigger_many(
        self, items: list[tuple[str, int | None, str]]
    ) -> list[str | BaseException]:
        async with self._lock:
            await self._learn([job for job, _, _ in items])
            now = self._now()
            results: list[str | BaseException] = [JobNotFound(job) for job, _, _ in items]
            for priority, group in group_triggers(items, self._jobs, now).items():
                ids: list[str | None] | None = None
                for left in range(2, -1, -1):  # the same minted ids each try: never two runs
                    try:
                        ids = await self._enqueue_many([g for _, g in group], priority, False)
                        break
                    except Exception as exc:
                        log.warning(
                            "triggered runs not created (%d tries left)", left, exc_info=True
                        )
                        if not left:
                            for i, _ in group:
                                results[i] = exc
                if ids is None:  # every try failed: each caller gets the error, not a run id
                    continue
                for (i, _), run_id in zip(group, ids, strict=True):
                    results[i] = run_id if run_id else RuntimeError("run not created")
            try:  # the runs exist now: an error from here on must not make a client retry
                await self._dispatch()
                await self._states.flush()
            except Exception:
                log.warning("triggered runs wait for the next tick", exc_info=True)
            return results

    async def _learn(self, jobs: list[str]) -> None:
        """Jobs triggered that we have not heard of yet, read from DuckDB (the truth): a job
        stored a moment ago may be triggered before its JobUpserted reaches us (`tg run`
        starts the Scheduler while the job files are being stored). Under the lock;
        a job DuckDB does not have either stays unknown (JobNotFound)."""
        unknown = list(dict.fromkeys(j for j in jobs if j not in self._jobs))
        if not unknown:
            return
        try:
            rows = await self._db.get_jobs(unknown)
        except Exception:
            log.warning("jobs %s: not known here and DuckDB did not answer", unknown)
            return
        for name, row in rows.items():
            await self._apply_row(name, row)

    async def set_engines(self, engines: list[Any]) -> int:
        """The engines changed (scaled at run time): capacity follows. Returns the capacity.
        Fewer engines lower it at once; runs in flight above it finish, nothing new starts."""
        async with self._lock:
            self._fleet.set_engines([face(e) for e in engines])
            await self._dispatch()
            await self._states.flush()
            return self._fleet.capacity

    async def engine_lost(
        self, engine_id: str, reason: str, runs: list[str] | None = None
    ) -> list[str]:
        """Every run `engine_id` was working on (by its events, and `runs`) is lost: its
        process or node is gone, or it was removed before they ended. Each fails this attempt
        now and is retried per its job's policy, from its last staged page."""
        async with self._lock:
            lost = await self._fleet.fail_runs_of(engine_id, reason, runs or [])
            await self._dispatch()
            await self._states.flush()
            return lost

    async def status(self) -> dict[str, Any]:
        return {
            "engines": len(self._fleet.engines),
            "slots": self._fleet.capacity,  # runs the engines can work on at once
            "running": len(self._in_flight),
            "queue_depth": len(self._queue),
            "jobs": len(self._jobs),
        }

    async def metrics(self) -> dict[str, Any]:
        """What /metrics shows from here: queue, engines, retries, trigger lateness, runs
        active by state, the counters of ended runs (scheduler/counters.py), each job's last
        success (DuckDB's, or ours alone while it does not answer), staleness and failed
        checks. No table scan: the last successes are read from DuckDB once."""
        if not self._successes_loaded:
            await self._load_successes(log_failure=False)
        active = {state.value: 0 for state in RunState if state not in TERMINAL}
        for run in self._states.active():
            active[run.state.value] = active.get(run.state.value, 0) + 1
        return {
            **(await self.status()),
            "active": active,
            "counters": self._counters.snapshot(),
            "retry_waiting": self._errors.waiting(),
            "lateness": self._lateness.snapshot(),
            "last_success": {
                job: at.timestamp()
                for job, at in self._freshness.last_successes().items()
                if job in self._jobs
            },
            "stale": {
                job: 1.0 if self._freshness.is_stale(job) else 0.0
                for job, entry in self._jobs.items()
                if entry.spec.alerts is not None and entry.spec.alerts.stale_after is not None
            },
            "checks_failed": dict(self._checks_failed),
        }

    async def job_status(self, name: str | None = None) -> dict[str, dict[str, Any]]:
        """{job: {paused, next_run_at, active_runs}} for one job or all."""
        now = self._now()
        out = {}
        for job, entry in self._jobs.items():
            if name not in (None, job):
                continue
            upcoming = entry.next_run_at(now)
            out[job] = {
                "paused": entry.paused,
                "next_run_at": upcoming.isoformat() if upcoming else None,
                "active_runs": len(self._states.active(job)),
            }
        if name is not None and name not in out:
            raise JobNotFound(name)
        return out

    async def cancel(self, run_id: str) -> str:
        """Cancel a queued, retrying or running run: it ends `cancelled` and nothing of it is
        committed. The DuckDB state changes first, atomically, so a commit racing the cancel
        either wins (IllegalTransition here: the run had ended) or is refused."""
        async with self._lock:
            run = self._states.get(run_id)
            if run is None:
                row = await self._db.get_run(run_id)
                if row is None:
                    raise RunNotFound(run_id)
                raise IllegalTransition(run_id, row["state"], RunState.CANCELLED.value)
            await self._cancel(run)
            await self._states.flush()
            return run_id

    def _job_of(self, run_id: str) -> str | None:
        run = self._states.get(run_id)
        return run.job if run is not None else None

    async def _cancel(self, run: TrackedRun) -> None:
        run_id = run.run_id
        if not await self._db.cancel_run(run_id):  # ended meanwhile: DuckDB says how
            state = run.state.value
            await self._refresh(run)
            if self._states.get(run_id) is None:
                self._queue.remove(run_id)
                self._fleet.release(run_id)
            raise IllegalTransition(run_id, state, RunState.CANCELLED.value)
        self._queue.remove(run_id)
        self._errors.forget(run_id)
        self._states.ended(run_id, RunState.CANCELLED)  # DuckDB wrote it, atomically
        self._counters.ended(run.job, RunState.CANCELLED)
        if run_id in self._in_flight:  # the engine stops it and drops its staging
            try:  # if this is lost, the engine's next stage or commit is refused anyway
                await self._broker.publish(TOPIC_CONTROL, CancelRun(run_id=run_id))
            except Exception:
                log.warning("run %s: cancel not sent to the engines", run_id, exc_info=True)
        else:
            await self._db.discard_run(run_id)

    # -- internals --------------------------------------------------------------------------

    async def _load_job(
        self, name: str, stored: dict[str, Any], paused: bool, stored_mark: datetime | None = None
    ) -> None:
        """Hold the job; a new one resumes from its watermark in DuckDB (`stored_mark`: read
        already, with the other jobs'), else from now."""
        spec = JobSpec.model_validate(stored)
        previous = self._jobs.get(name)
        if previous is not None:
            watermark = previous.edited_watermark(stored, paused, self._now())
        elif stored_mark is not None:
            watermark = stored_mark
        else:
            watermark = await self._db.watermark(name) or self._now()
        self._jobs[name] = entry = JobEntry(spec, stored, paused, watermark)
        self._freshness.known(name, self._now())
        self._dependents = None
        self._fires.set(name, self._now() if entry.schedulable else None)  # due now: catch-up
        self._wake.set()

    async def _tick_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.tick_once()
            except Exception:
                log.exception("scheduler tick failed; next tick continues")
            await self._sleep_until_next()

    async def tick_once(self) -> None:
        """One turn of the loop: fire due ticks, release retries, expire leases, reconcile
        with DuckDB now and then, dispatch."""
        async with self._lock:
            if self._mono() - self._reconciled_at >= self._reconcile_s:
                self._reconciled_at = self._mono()
                await self._reconcile()
            if self._schedules:
                await self._fire_due()
            for run in await self._errors.release_due(self._now()):
                self._queue.push(run.run_id, run.job, run.priority, self._now())
            await self._fleet.expire_leases()
            await self._stale_jobs()
            # one point per AGING_EVERY: checking more often only costs a queue scan
            if self._mono() - self._aged_at >= AGING_EVERY.total_seconds():
                self._queue.age(self._now(), AGING_EVERY)
                self._aged_at = self._mono()
            await self._dispatch()
            await self._states.flush()

    async def _sleep_until_next(self) -> None:
        """Until the next job is due (at most `tick_seconds`: retries, leases and jitter are
        checked that often), or until a job change wakes us."""
        delay = self._tick_seconds
        earliest = self._fires.earliest() if self._schedules else None
        if earliest is not None:
            delay = min(delay, max(0.0, (earliest - self._now()).total_seconds()))
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            pass

    async def _fire_due(self) -> None:
        """Every due tick of every due job becomes a run: one insert and one publish per tick of
        the loop, however many jobs fire at once. A job's watermark moves past its ticks only
        once their runs exist in DuckDB: if the insert fails, the same ticks (with the same
        minted run ids) are tried again at the next turn."""
        now = self._now()
        due = due_runs(self._fires.pop_due(now), self._jobs, now, self._up_since)
        for name in due.cut:
            log.warning("job %s: catch-up bounded, older missed ticks dropped", name)
        try:
            if due.runs:
                await self._enqueue_many(due.runs, None, check_overlap=True)
        except Exception:
            for entry, _ in due.fired:  # not inserted: due again at once
                self._fires.set(entry.spec.name, now)
            raise
        for entry, watermark in due.fired:
            entry.watermark = watermark
            self._fires.set(entry.spec.name, entry.next_run_at(now))

    async def _enqueue_many(
        self,
        batch: list[NewTick],
        priority: int | None,
        check_overlap: bool,
    ) -> list[str | None]:
        plans = plan_runs(
            batch, lambda job: bool(self._states.active(job)), priority, check_overlap
        )
        entries = [
            NewRun(
                p.job,
                p.scheduled_for,
                p.trigger,
                p.priority,
                RunState.SKIPPED if p.skip else RunState.QUEUED,
                self._minted.setdefault((p.job, p.scheduled_for), self._states.new_id()),
            )
            for p in plans
        ]
        runs = await self._states.create_many(entries)
        for p in plans:
            self._minted.pop((p.job, p.scheduled_for), None)
        for (entry, when, trigger), run in zip(batch, runs, strict=True):
            if run is not None and run.state is RunState.SKIPPED:  # created ended
                self._counters.ended(run.job, RunState.SKIPPED)
            if run is None or run.state is not RunState.QUEUED:
                continue
            due = start_at(entry, when, trigger, self._rng)
            self._queue.push(run.run_id, run.job, run.priority, due)
        return [run.run_id if run else None for run in runs]

    def _can_run(self, item: QueuedRun) -> bool:
        entry = self._jobs.get(item.job)
        return entry is not None and entry.may_start(self._in_flight.running(item.job))

    async def _dispatch(self) -> None:
        """Hand queued runs to the engines while there is capacity: one publish for all."""
        orders, items = [], []
        while len(self._in_flight) < self._fleet.capacity:
            item = self._queue.pop_ready(self._now(), self._can_run)
            if item is None:
                break
            entry = self._jobs[item.job]
            run = self._states.get(item.run_id)
            if run is None or run.state is not RunState.QUEUED:
                continue  # ended or taken meanwhile: nothing to hand out
            items.append(item)
            self._in_flight.take(item.run_id, item.job, run.attempt)
            orders.append(
                TriggerRun(
                    run_id=item.run_id,
                    job=item.job,
                    spec=entry.stored,
                    attempt=run.attempt,
                    trigger=run.trigger,
                )
            )
        if orders and not await self._broker.publish(TOPIC_TRIGGERS, *orders):
            # no group got them: the broker restarted and its work queue is not back yet.
            # Nobody can run them: back in the queue (without this they would wait for the
            # lease to expire), dispatched again at the next tick.
            log.warning("no engine is listening on %s: %d run(s) wait", TOPIC_TRIGGERS, len(items))
            for item in items:
                self._fleet.release(item.run_id)
                self._queue.push(item.run_id, item.job, item.base, item.due)

    async def _on_config(self, batch: list[Any]) -> None:
        """Jobs changed: each message says which, DuckDB (written before the message was
        sent) says how it is now, read for the whole consumed batch at once (a folder of
        1,000 files arrives as two announcements of 500). A message may be stale (delayed,
        reordered, duplicated: a resume delivered after the pause that followed it), and
        applying its own content would undo the newer change until the next reconcile; a
        tick could fire meanwhile. Only when DuckDB does not answer are the messages' own
        contents applied, in order (the reconcile brings them in line later)."""
        messages = [m for m in batch if isinstance(getattr(m, "name", None), str)]
        if not messages:
            return
        names = list(dict.fromkeys(str(m.name) for m in messages))
        async with self._lock:
            try:
                rows = await self._db.get_jobs(names)
            except Exception:
                log.warning("jobs %s changed; DuckDB did not answer: applied as sent", names)
                for message in messages:
                    await self._apply_message(message)
            else:
                for name in names:
                    await self._apply_row(name, rows.get(name))
            await self._states.flush()

    async def _apply_row(self, name: str, row: dict[str, Any] | None) -> None:
        """The job as DuckDB holds it now (None: deleted). Under the lock."""
        if row is None:
            await self._drop_job(name)
            return
        version = (row["updated_at"], bool(row["paused"]))
        if name in self._jobs and self._versions.get(name) == version:
            return  # already what we run (a duplicated message)
        await self._load_job(name, row["spec"], bool(row["paused"]))
        self._versions[name] = version

    async def _apply_message(self, message: Any) -> None:
        """The message's own content (DuckDB unavailable). Under the lock."""
        self._versions.pop(message.name, None)  # the next reconcile reads the job back
        match message:
            case JobUpserted():
                await self._load_job(message.name, message.spec, message.paused)
            case JobPauseChanged() if message.name in self._jobs:
                entry = self._jobs[message.name]
                if entry.paused and not message.paused:  # resumed: the pause is not replayed
                    entry.watermark = max(entry.watermark, self._now())
                entry.paused = message.paused
                self._dependents = None
                self._fires.set(message.name, self._now() if entry.schedulable else None)
                self._wake.set()
            case JobDeleted():
                await self._drop_job(message.name)

    async def _drop_job(self, name: str) -> None:
        """The job is gone: it fires no more, and its runs still waiting are cancelled."""
        self._jobs.pop(name, None)
        self._freshness.forget(name)
        self._versions.pop(name, None)
        self._dependents = None
        self._fires.set(name, None)
        for run in self._states.active(name):
            log.info("run %s cancelled: job %s deleted", run.run_id, name)
            try:
                await self._cancel(run)
            except IllegalTransition:
                pass  # it ended first

    async def _reconcile(self) -> None:
        """DuckDB is the truth, the broker only transport: jobs whose change message was lost
        (a broker restart) and runs whose events were lost are brought in line."""
        versions = await self._db.job_versions()
        for name in [n for n in self._jobs if n not in versions]:
            log.info("job %s is gone from the database: dropping it", name)
            await self._drop_job(name)
        changed = [n for n, version in versions.items() if self._versions.get(n) != version]
        rows = await self._db.get_jobs(changed) if changed else {}
        for name, row in rows.items():  # one deleted meanwhile: the next reconcile drops it
            await self._apply_row(name, row)
        await self._fleet.reconcile_runs()
        for run in self._states.active():
            if run.job not in self._jobs:  # its job was deleted while we did not hear it
                await self._drop_job(run.job)
        await self._reconcile_dependents()

    async def _on_sign_of_life(self, message: Any) -> None:
        """The lease group's handler: its own consumer, no lock (see Fleet.on_sign_of_life)."""
        await self._fleet.on_sign_of_life(message)

    def _spec_of(self, job: str) -> JobSpec | None:
        entry = self._jobs.get(job)
        return entry.spec if entry else None

    async def _on_status(self, batch: list[Any]) -> None:
        """A consumed batch of engine events: one dispatch and one publish for all of them."""
        async with self._lock:
            for message in batch:
                try:
                    await self._on_event(message)
                except Exception:
                    log.exception("scheduler: event %r not handled", message)
            await self._dispatch()
            await self._states.flush()

    async def _on_event(self, message: Any) -> None:
        run_id = getattr(message, "run_id", "")
        attempt = getattr(message, "attempt", None)
        if isinstance(message, RunStarted | RunHeartbeat):
            self._in_flight.seen(run_id, message.engine, attempt)
        elif isinstance(message, RunProgressed):
            self._in_flight.seen(run_id, attempt=attempt)
        if isinstance(message, EngineStarted):  # a restart: what it held died with it
            await self._fleet.fail_runs_of(
                message.engine,
                f"engine lost: {message.engine} restarted (its process or node died)",
            )
            return
        if isinstance(message, RunFinished | RunFailed):  # whatever became of the run
            self._counters.requested(message.job, message.requests)
        run = self._states.get(run_id)
        if run is None:  # ended here already (cancelled): the engine is free again
            await self._on_untracked(message, attempt)
            return
        if isinstance(message, RunFinished):  # DuckDB says succeeded: whichever attempt
            self._errors.forget(run.run_id)  # a presumed-lost attempt that made it
            self._states.ended(run.run_id, RunState.SUCCEEDED)
            started = message.started_at
            seconds = (message.ts - started).total_seconds() if started else message.seconds
            self._counters.succeeded(run.job, message.rows, seconds)
            self._fleet.release(run.run_id)
            await self._succeeded(message)
            await self._fire_dependents(run.job)
            return
        if attempt != run.attempt:  # of a superseded attempt: the current one owns the run
            log.info("run %s: dropping %s of attempt %s", run_id, message.kind, attempt)
            return
        match message:
            case RunStarted() if run.state is RunState.QUEUED:
                # the engine's begin_attempt wrote `running` and started_at already
                await self._states.move(run.run_id, RunState.RUNNING, persist=False)
                self._lateness.observe((message.ts - run.scheduled_for).total_seconds())
            case RunCancelled():
                # the engine was refused the run (cancelled, or another engine holds it)
                await self._refresh(run)
                if self._states.get(run.run_id) is None:
                    self._queue.remove(run.run_id)
                    self._fleet.release(run.run_id)
            case RunFailed() if run.state is not RunState.RETRYING:
                spec = self._spec_of(run.job)
                await self._errors.failed(
                    run, spec, message.error, message.pages, self._now(), final=message.final
                )
                self._checks_did_not_pass(message.run_id, run.job, message.failed_checks)
                # released once recorded: should that fail (Database down for long), the run
                # stays in flight, and its lease (no more heartbeats) brings it back
                self._fleet.release(run.run_id)

    async def _refresh(self, run: TrackedRun) -> None:
        """StateManager.refresh, counting the run's end when DuckDB says it ended."""
        refreshed = await self._states.refresh(run)
        if self._states.get(run.run_id) is None and refreshed.state in TERMINAL:
            self._counters.ended(run.job, refreshed.state)

    def _gave_up(self, run: TrackedRun) -> None:
        """The ErrorHandler failed the run for good (out of attempts, a final error, a lost
        engine or lease): the job is failing, and one more failed run."""
        self._freshness.failed(run.job)
        self._counters.ended(run.job, RunState.FAILED)

    async def _succeeded(self, message: RunFinished) -> None:
        """A success: its checks that did not pass, and the recovery it may be (once)."""
        self._checks_did_not_pass(message.run_id, message.job, message.failed_checks)
        was = self._freshness.succeeded(message.job, message.ts)
        if was is None:
            return
        spec = self._spec_of(message.job)
        log.info("job %s recovered (was %s): run %s", message.job, was, message.run_id)
        try:
            await self._broker.publish(
                TOPIC_STATUS, JobRecovered(job=message.job, run_id=message.run_id, was=was.value)
            )
        except Exception:  # the event is lost; the alert and the run's end are not
            log.exception("job %s: job_recovered not published", message.job)
        if wants(spec, AlertOn.RECOVERED):
            self._errors.alert(job_recovered(message.job, message.run_id, was.value, message.ts))

    async def _load_successes(self, *, log_failure: bool = True) -> bool:
        """Each job's last success from DuckDB into Freshness; False when it did not answer."""
        try:
            self._freshness.load(await self._db.last_successes())
        except Exception:
            if log_failure:
                log.exception("last successes not read; freshness waits for DuckDB")
            return False
        self._successes_loaded = True
        return True

    def _checks_did_not_pass(self, run_id: str, job: str, names: list[str]) -> None:
        if not names:
            return
        self._checks_failed[job] = self._checks_failed.get(job, 0) + len(names)
        if wants(self._spec_of(job), AlertOn.CHECK_FAILED):
            self._errors.alert(check_failed(run_id, job, list(names), self._now()))

    async def _stale_jobs(self) -> None:
        """Jobs past their `alerts.stale_after` without a success: one job_stale each. The
        last successes are read from DuckDB once, when a job first has a `stale_after` (a
        system without one never asks)."""
        specs = {
            name: entry.spec
            for name, entry in self._jobs.items()
            if entry.spec.alerts is not None and entry.spec.alerts.stale_after is not None
        }
        if not specs or not (self._successes_loaded or await self._load_successes()):
            return
        now = self._now()
        for job, last in self._freshness.due(specs, now):
            spec = specs[job]
            limit = spec.alerts.stale_after if spec.alerts is not None else None
            seconds = limit.total_seconds() if limit is not None else 0.0
            log.warning("job %s is stale: no success since %s", job, last or "it was added")
            try:
                await self._broker.publish(
                    TOPIC_STATUS,
                    JobStale(job=job, last_success_at=last, stale_after_seconds=seconds),
                )
            except Exception:  # the event is lost; the alert and the tick are not
                log.exception("job %s: job_stale not published", job)
            if wants(spec, AlertOn.STALE):
                self._errors.alert(job_stale(job, last, seconds))

    async def _on_untracked(self, message: Any, attempt: int | None) -> None:
        if isinstance(message, RunFinished):
            await self._succeeded(message)
            await self._fire_dependents(message.job)
        if isinstance(message, RunCancelled | RunFinished | RunFailed):
            if self._in_flight.attempt(message.run_id) == attempt:
                self._fleet.release(message.run_id)

    async def _fire_dependents(self, job: str) -> None:
        if self._dependents is None:  # rebuilt after a job change: not a scan per finished run
            self._dependents = dependents_of(self._jobs.values())
        if job in self._dependents:
            await self._reconcile_dependents(job)

    async def _reconcile_dependents(self, upstream: str | None = None) -> None:
        """Each success of an upstream job fires each dependent once: DuckDB says which
        successes have no dependent run yet (the RunFinished message may be lost, or arrive
        while we restart), and the dependent's run is unique on that success (its
        scheduled_for is the success's finished_at), so creating it twice is a no-op."""
        edges = dependency_edges(self._jobs.values(), upstream)
        if not edges:
            return
        missing = await self._db.missing_dependents(edges)
        batch = [
            (self._jobs[name], when, after_trigger(up))
            for name, up, when in missing
            if name in self._jobs
        ]
        if batch:
            await self._enqueue_many(batch, None, check_overlap=True)


if TYPE_CHECKING:  # the actor keeps the promises of its face: mypy checks this conversion

    def _keeps_its_face(actor: Scheduler) -> interfaces.Scheduler:
        return actor
