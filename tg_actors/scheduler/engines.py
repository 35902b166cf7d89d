"""The Scheduler's engine side: how many engines there are (capacity), which runs each holds,
and what happens to those runs when an engine is lost, removed or silent past its lease, or
when the Scheduler itself restarts and finds runs in flight.

`Fleet` is a plain class the Scheduler (its one Ray actor) owns, as Ray Serve's controller
owns its state managers: it is given its collaborators in its constructor (the Database face,
InFlight, the StateManager, the ErrorHandler, a getter of the current TaskQueue, a job-spec
lookup, the clock) and shares no attribute with the Scheduler. Not thread-safe: the
Scheduler calls it under its lock (`on_sign_of_life` excepted, which only touches InFlight).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tg_actors import interfaces
from tg_actors.jobs import JobSpec
from tg_actors.messages import RunHeartbeat, RunProgressed, RunStarted
from tg_actors.runstate import TERMINAL, RunState
from tg_actors.scheduler.error_handler import ErrorHandler
from tg_actors.scheduler.inflight import InFlight
from tg_actors.scheduler.states import StateManager, TrackedRun
from tg_actors.scheduler.taskqueue import TaskQueue

log = logging.getLogger(__name__)


class Fleet:
    """The engines of now and the runs handed to them. `queue` returns the Scheduler's
    current TaskQueue (a boot replaces it); `spec_of` a job's spec, None once it is gone."""

    def __init__(
        self,
        db: interfaces.Database,
        in_flight: InFlight,
        states: StateManager,
        errors: ErrorHandler,
        queue: Callable[[], TaskQueue],
        spec_of: Callable[[str], JobSpec | None],
        clock: Callable[[], datetime],
        *,
        slots: int = 1,
        ended: Callable[[str, RunState], None] | None = None,
    ) -> None:
        """`ended(job, state)`: a run found ended in DuckDB by `reconcile_runs` (its own event
        lost): the Scheduler counts it, as it counts the ends it hears of."""
        self._ended = ended
        self._db = db
        self._in_flight = in_flight
        self._states = states
        self._errors = errors
        self._queue = queue
        self._spec_of = spec_of
        self._now = clock
        self._slots = max(1, slots)
        self._engines: tuple[interfaces.Engine, ...] = ()
        self._capacity = 0
        self._stopping = False

    @property
    def engines(self) -> tuple[interfaces.Engine, ...]:
        return self._engines

    @property
    def capacity(self) -> int:
        """Runs the engines can work on at once: engines x slots, 0 once stopping."""
        return self._capacity

    def set_engines(self, engines: list[interfaces.Engine]) -> None:
        self._engines = tuple(engines)
        if not self._stopping:
            self._capacity = len(self._engines) * self._slots

    def stop_dispatching(self) -> None:
        """A graceful stop began: capacity 0 from now on, whatever engines come or go."""
        self._stopping = True
        self._capacity = 0

    async def fail_runs_of(
        self, engine_id: str, reason: str, runs: list[str] | None = None
    ) -> list[str]:
        held = self._in_flight.held_by(engine_id)
        lost = list(dict.fromkeys(held + [r for r in runs or [] if r in self._in_flight]))
        for run_id in lost:
            run = self._states.get(run_id)
            if run is not None and run.state is RunState.RUNNING:
                log.warning("run %s lost with engine %s: %s", run_id, engine_id, reason)
                await self.fail_lost(run, reason)
        return lost

    async def busy_engines(self) -> dict[str, str]:
        """run_id -> engine id for runs an engine is working on now (after our own restart)."""
        busy: dict[str, str] = {}
        for engine in self._engines:
            try:
                stats = await asyncio.wait_for(engine.stats(), 5)
            except Exception:
                continue
            busy.update(dict.fromkeys(stats.get("current_runs") or {}, stats.get("engine", "")))
        return busy

    async def recover_open_runs(self) -> None:
        """After our own (re)start: every open run of DuckDB is tracked again. A run an engine
        still reports working on stays with it; every other `running` or `retrying` run is
        re-dispatched under a new attempt number, which fences off whatever still holds the
        old one (a busy engine that missed the stats() timeout cannot stage or commit it)."""
        busy = await self.busy_engines()
        for row in await self._db.open_runs():
            run = self._states.adopt(row)
            if run.state is RunState.RUNNING and run.run_id in busy:
                # still being worked on: its events (of this attempt) will arrive
                self._in_flight.take(run.run_id, run.job, run.attempt, busy[run.run_id])
                continue
            if run.state is not RunState.QUEUED:
                await self._states.move(
                    run.run_id, RunState.QUEUED, attempt=run.attempt + 1, error=None
                )
            if run.state is RunState.QUEUED:
                # a TriggerRun of it may still wait in the work queue: begin starts it once
                self._queue().push(run.run_id, run.job, run.priority, run.scheduled_for)
        if len(self._queue()) or self._in_flight:
            log.info(
                "recovered %d queued and %d running runs from the database",
                len(self._queue()),
                len(self._in_flight),
            )

    async def reconcile_runs(self) -> None:
        """DuckDB is the truth: runs it holds open that we do not track (an insert whose answer
        was lost, a message lost with the broker) are tracked; runs it ended are let go."""
        rows = {row["run_id"]: row for row in await self._db.open_runs()}
        for run in self._states.active():
            if run.run_id not in rows:  # ended in DuckDB without us hearing of it
                refreshed = await self._states.refresh(run)
                if self._states.get(run.run_id) is None:
                    if self._ended is not None and refreshed.state in TERMINAL:
                        self._ended(run.job, refreshed.state)
                    self._queue().remove(run.run_id)
                    self._errors.forget(run.run_id)
                    self.release(run.run_id)
        for run_id, row in rows.items():
            known = self._states.get(run_id)
            before = (known.state, known.attempt) if known else None
            synced = self._states.sync(row)
            if synced is None or before == (synced.state, synced.attempt):
                continue
            run = synced
            if self._in_flight.attempt(run_id) not in (None, run.attempt):
                self.release(run_id)  # the attempt we handed out is not the current one
            if run.state is RunState.QUEUED and run_id not in self._in_flight:
                self._queue().push(run_id, run.job, run.priority, run.scheduled_for)
            elif run.state is RunState.RUNNING:
                self._queue().remove(run_id)
                self._in_flight.take(run_id, run.job, run.attempt, row.get("engine"))
            elif run.state is RunState.RETRYING:
                self._errors.retry_at(run_id, self._now())
        for run in self._states.active():
            self.place(run)

    def place(self, run: TrackedRun) -> None:
        """Make sure a tracked run is where its state says: a queued run not handed out is in
        the TaskQueue, a running one has a lease, a retrying one a backoff. A refused write
        that adopted DuckDB's row (a newer attempt, a state we did not expect) leaves the run
        in none of them otherwise."""
        if run.state is RunState.QUEUED:
            if self._in_flight.attempt(run.run_id) not in (None, run.attempt):
                self.release(run.run_id)
            if run.run_id not in self._in_flight:
                self._queue().push(run.run_id, run.job, run.priority, run.scheduled_for)
        elif run.state is RunState.RUNNING:
            self._queue().remove(run.run_id)
            if self._in_flight.attempt(run.run_id) != run.attempt:
                self._in_flight.take(run.run_id, run.job, run.attempt)
        elif run.state is RunState.RETRYING:
            self.release(run.run_id)
            self._errors.retry_at(run.run_id, self._now())

    async def on_sign_of_life(self, message: Any) -> None:
        """Its own consumer group, no lock: a heartbeat must not wait behind a busy tick, or a
        healthy run would look lost. Only the attempt handed out renews its lease."""
        if isinstance(message, RunStarted | RunHeartbeat | RunProgressed):
            self._in_flight.seen(message.run_id, attempt=message.attempt)

    def release(self, run_id: str) -> None:
        self._in_flight.release(run_id)

    async def expire_leases(self) -> None:
        """A run whose engine has been silent longer than the lease: its engine is presumed
        dead. Never started: dispatch it again under a new attempt. Begun (DuckDB says
        `running`, even if its RunStarted never reached us): a failed attempt, retried per the
        job's policy; the attempt number fences off the old engine if it was alive. Each run
        is handled on its own: one that cannot be (the Database down) waits for the next tick."""
        for run_id in self._in_flight.expired():
            try:
                await self.expire(run_id)
            except Exception:
                log.warning("run %s: lease expiry not recorded yet", run_id, exc_info=True)

    async def expire(self, run_id: str) -> None:
        lease = self._in_flight.lease
        run = self._states.get(run_id)
        if run is None or run.state is RunState.RETRYING:
            self.release(run_id)
            return
        if run.state is RunState.QUEUED:
            log.warning("run %s not picked up within %.0fs: dispatching again", run_id, lease)
            if await self._states.redispatch(run):  # else DuckDB knew better: adopted
                self.release(run_id)
                self._queue().push(run.run_id, run.job, run.priority, self._now())
                return
            current = self._states.get(run_id)
            if current is None:
                self.release(run_id)
                return
            if current.state is not RunState.RUNNING:
                self.place(current)
                return
        await self.fail_lost(run, f"engine lost: no heartbeat for {lease:.0f}s")

    async def fail_lost(self, run: TrackedRun, reason: str) -> None:
        """Its engine is gone: this attempt failed (retried per the job's policy)."""
        await self._errors.failed(run, self._spec_of(run.job), reason, 0, self._now())
        self.release(run.run_id)
