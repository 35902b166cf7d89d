"""StateManager: the Scheduler's record of run states.

Every change is checked against the transition table (core.runstate), persisted to `tg.runs`
through the Database actor, then published on the `status` topic — in that order, so what
subscribers see is already true in DuckDB. Publishes wait in an outbox until `flush`: the
Scheduler flushes once per handled batch of events, so a burst of changes is one publish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ray.exceptions import RayActorError

from tg_actors.broker_client import BrokerClient
from tg_actors.core.runstate import ACTIVE, RunState, check_transition
from tg_actors.errors import IllegalTransition
from tg_actors.messages import TOPIC_STATUS, RunStateChanged

log = logging.getLogger(__name__)
PUBLISH_RETRY_S = 10.0  # state changes wait this long for a restarting broker
DB_RETRY_S = 30.0  # and this long for a restarting Database


@dataclass
class TrackedRun:
    run_id: str
    job: str
    state: RunState
    trigger: str
    attempt: int
    priority: int
    scheduled_for: datetime


@dataclass(frozen=True)
class NewRun:
    job: str
    scheduled_for: datetime
    trigger: str
    priority: int
    state: RunState = RunState.QUEUED


class StateManager:
    def __init__(self, db: Any, broker: BrokerClient) -> None:
        self._db = db
        self._broker = broker
        self._runs: dict[str, TrackedRun] = {}  # active runs only
        self._by_job: defaultdict[str, set[str]] = defaultdict(set)
        self._outbox: list[RunStateChanged] = []

    async def flush(self) -> None:
        """Publish the state changes made since the last flush, in order, in one call."""
        if self._outbox:
            pending, self._outbox = self._outbox, []
            try:  # a restarting broker is waited out; if it stays down they go with the next
                await self._broker.publish(TOPIC_STATUS, *pending, retry_for=PUBLISH_RETRY_S)
            except Exception:
                self._outbox[:0] = pending
                raise

    def get(self, run_id: str) -> TrackedRun | None:
        return self._runs.get(run_id)

    def active(self, job: str | None = None) -> list[TrackedRun]:
        if job is None:
            return list(self._runs.values())
        return [self._runs[run_id] for run_id in self._by_job.get(job, ())]

    def _track(self, run: TrackedRun) -> None:
        self._runs[run.run_id] = run
        self._by_job[run.job].add(run.run_id)

    def _untrack(self, run: TrackedRun) -> None:
        self._runs.pop(run.run_id, None)
        ids = self._by_job.get(run.job)
        if ids is not None:
            ids.discard(run.run_id)
            if not ids:
                del self._by_job[run.job]

    async def create(
        self,
        job: str,
        scheduled_for: datetime,
        trigger: str,
        priority: int,
        state: RunState = RunState.QUEUED,
    ) -> TrackedRun | None:
        """Insert the run (unique on job + scheduled_for). None if that tick already has one."""
        return (await self.create_many([NewRun(job, scheduled_for, trigger, priority, state)]))[0]

    async def create_many(self, entries: list[NewRun]) -> list[TrackedRun | None]:
        """Insert many runs in one statement and announce them in one publish (a tick of many
        jobs); None for an entry whose (job, scheduled_for) already had a run."""
        ids = await self._db.create_runs.remote(
            [
                {
                    "job": e.job,
                    "scheduled_for": e.scheduled_for,
                    "trigger": e.trigger,
                    "state": e.state.value,
                    "priority": e.priority,
                }
                for e in entries
            ]
        )
        runs: list[TrackedRun | None] = []
        for e, run_id in zip(entries, ids, strict=True):
            if run_id is None:
                runs.append(None)
                continue
            run = TrackedRun(run_id, e.job, e.state, e.trigger, 1, e.priority, e.scheduled_for)
            if e.state in ACTIVE:
                self._track(run)
            log.info(
                "run_state run_id=%s job=%s from=- to=%s trigger=%s attempt=1 scheduled_for=%s",
                run_id,
                e.job,
                e.state,
                e.trigger,
                e.scheduled_for.isoformat(),
            )
            runs.append(run)
        self._outbox.extend(self._changed(r, None) for r in runs if r is not None)
        return runs

    def adopt(self, row: dict[str, Any]) -> TrackedRun:
        """Track a run read back from DuckDB after a restart."""
        run = TrackedRun(
            row["run_id"],
            row["job"],
            RunState(row["state"]),
            row["trigger"],
            row["attempt"],
            row.get("priority") or 50,
            row["scheduled_for"],
        )
        self._track(run)
        return run

    async def move(
        self, run_id: str, target: RunState, *, persist: bool = True, **fields: Any
    ) -> TrackedRun:
        """Apply a legal transition; raise IllegalTransition otherwise. `persist=False` when
        the Database already wrote the state (the engine's commit is the source of truth)."""
        run = self._runs[run_id]
        previous = run.state
        check_transition(run_id, previous, target)
        if persist:
            try:  # conditional: a late event must not overwrite what DuckDB already holds
                await self._update_run(
                    run_id, expect_state=previous.value, state=target.value, **fields
                )
            except IllegalTransition as exc:
                if exc.current != target.value:  # else: our own write, repeated after a crash
                    return await self._adopt_newer(run, exc)
        run.state = target
        if target not in ACTIVE:
            self._untrack(run)
        # one key=value line per change: grep-able, and parseable by log shippers
        log.info(
            "run_state run_id=%s job=%s from=%s to=%s trigger=%s attempt=%d",
            run_id,
            run.job,
            previous,
            target,
            run.trigger,
            run.attempt,
        )
        self._outbox.append(self._changed(run, previous, fields.get("error")))
        return run

    async def _update_run(self, run_id: str, **kwargs: Any) -> None:
        """update_run, waiting out a Database restart (a few seconds, during which calls fail
        at once): else a state change made then would be lost, e.g. a failed attempt never
        retried. Safe to repeat: the update is conditional on the state it expects."""
        deadline = time.monotonic() + DB_RETRY_S
        while True:
            try:
                await self._db.update_run.remote(run_id, **kwargs)
                return
            except RayActorError:
                if time.monotonic() >= deadline:
                    raise
                log.warning("run %s: database unavailable; retrying its state change", run_id)
                await asyncio.sleep(0.25)

    async def _adopt_newer(self, run: TrackedRun, exc: IllegalTransition) -> TrackedRun:
        """DuckDB moved on without us (an engine committed while our event waited): take its
        state. An ended run is no longer tracked; its engine's own event frees the engine."""
        current = RunState(exc.current)
        log.info("run %s is already %s in the database; keeping that", run.run_id, current)
        run.state = current
        if current not in ACTIVE:
            self._untrack(run)
        return run

    @staticmethod
    def _changed(
        run: TrackedRun, previous: RunState | None, error: str | None = None
    ) -> RunStateChanged:
        return RunStateChanged(
            run_id=run.run_id,
            job=run.job,
            state=run.state.value,
            previous=previous.value if previous else None,
            trigger=run.trigger,
            error=error,
        )
