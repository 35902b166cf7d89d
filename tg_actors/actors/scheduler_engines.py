"""The Scheduler's engine side: how many engines there are (capacity), which runs each holds,
and what happens to those runs when an engine is lost, removed or silent past its lease, or
when the Scheduler itself restarts and finds runs in flight.

A mixin of the Scheduler (its one Ray actor), kept apart so each file reads on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tg_actors.actors.error_handler import ErrorHandler
from tg_actors.actors.state_manager import StateManager, TrackedRun
from tg_actors.core.inflight import InFlight
from tg_actors.core.planning import JobEntry
from tg_actors.core.runstate import RunState
from tg_actors.core.taskqueue import TaskQueue
from tg_actors.errors import IllegalTransition
from tg_actors.messages import RunHeartbeat, RunProgressed, RunStarted

log = logging.getLogger(__name__)


class EngineSide:
    # set by Scheduler.__init__
    _db: Any
    _engines: list[Any]
    _slots: int
    _capacity: int
    _stopping: bool
    _in_flight: InFlight
    _states: StateManager
    _errors: ErrorHandler
    _queue: TaskQueue
    _jobs: dict[str, JobEntry]
    _now: Callable[[], datetime]

    def _set_engines(self, engines: list[Any]) -> None:
        self._engines = list(engines)
        if not self._stopping:
            self._capacity = len(self._engines) * self._slots

    async def _fail_runs_of(
        self, engine_id: str, reason: str, runs: list[str] | None = None
    ) -> list[str]:
        held = self._in_flight.held_by(engine_id)
        lost = list(dict.fromkeys(held + [r for r in runs or [] if r in self._in_flight]))
        for run_id in lost:
            run = self._states.get(run_id)
            if run is not None and run.state is RunState.RUNNING:
                log.warning("run %s lost with engine %s: %s", run_id, engine_id, reason)
                await self._fail_lost(run, reason)
        return lost

    async def _busy_engines(self) -> dict[str, str]:
        """run_id -> engine id for runs an engine is working on now (after our own restart)."""
        busy: dict[str, str] = {}
        for engine in self._engines:
            try:
                stats = await asyncio.wait_for(engine.stats.remote(), 5)
            except Exception:
                continue
            busy.update(dict.fromkeys(stats.get("current_runs") or {}, stats.get("engine", "")))
        return busy

    async def _recover_open_runs(self) -> None:
        busy = await self._busy_engines()
        for row in await self._db.open_runs.remote():
            run = self._states.adopt(row)
            if run.run_id in busy:  # still being worked on: its events will arrive
                self._in_flight.take(run.run_id, run.job, busy[run.run_id])
                continue
            if run.state is RunState.RETRYING:  # its backoff timer died with the old session
                run.attempt += 1
                await self._states.move(
                    run.run_id, RunState.QUEUED, attempt=run.attempt, error=None
                )
            elif run.state is not RunState.QUEUED:  # its engine is gone with the old session
                await self._states.move(run.run_id, RunState.QUEUED)
            self._queue.push(run.run_id, run.job, run.priority, run.scheduled_for)
        if len(self._queue) or self._in_flight:
            log.info(
                "recovered %d queued and %d running runs from the database",
                len(self._queue),
                len(self._in_flight),
            )

    async def _on_sign_of_life(self, message: Any) -> None:
        """Its own consumer group, no lock: a heartbeat must not wait behind a busy tick, or a
        healthy run would look lost."""
        if isinstance(message, RunStarted | RunHeartbeat | RunProgressed):
            self._in_flight.seen(message.run_id)

    def _release(self, run_id: str) -> None:
        self._in_flight.release(run_id)

    async def _expire_leases(self) -> None:
        """A run whose engine has been silent longer than the lease: its engine is presumed
        dead. Never started: dispatch it again. Running: a failed attempt (retried per the
        job's policy; the attempt number fences off the old engine if it was alive)."""
        lease = self._in_flight.lease
        for run_id in self._in_flight.expired():
            run = self._states.get(run_id)
            if run is None:
                self._release(run_id)
                continue
            # each run is released once DuckDB has its new state: if the Database is down,
            # it stays in flight, expired, and the next tick tries again
            if run.state is RunState.QUEUED:
                # never started: send it again under a new attempt number, which fences off
                # the first TriggerRun should an engine still pick it up
                log.warning("run %s not picked up within %.0fs: dispatching again", run_id, lease)
                attempt = run.attempt + 1
                try:
                    await self._db.update_run.remote(run_id, expect_state="queued", attempt=attempt)
                except IllegalTransition:  # an engine began it meanwhile: its events follow
                    self._in_flight.seen(run_id)
                    continue
                run.attempt = attempt
                self._release(run_id)
                self._queue.push(run.run_id, run.job, run.priority, self._now())
                continue
            await self._fail_lost(run, f"engine lost: no heartbeat for {lease:.0f}s")

    async def _fail_lost(self, run: TrackedRun, reason: str) -> None:
        """Its engine is gone: this attempt failed (retried per the job's policy)."""
        entry = self._jobs.get(run.job)
        await self._errors.failed(run, entry.spec if entry else None, reason, 0, self._now())
        self._release(run.run_id)
