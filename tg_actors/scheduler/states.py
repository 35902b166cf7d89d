"""StateManager: the Scheduler's record of run states.

Every change is checked against the transition table (tg_actors.runstate), persisted to `tg.runs`
through the Database actor as a conditional update on (run_id, attempt, from-state), then
published on the `status` topic — in that order, so what subscribers see is already true in
DuckDB. A refused update means someone newer owns the run (an engine committed, a newer
attempt exists): the DuckDB row is taken as the truth, never overwritten. Publishes wait in an outbox until `flush`: the
Scheduler flushes once per handled batch of events, so a burst of changes is one publish.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tg_actors import interfaces
from tg_actors.broker.client import BrokerClient
from tg_actors.errors import IllegalTransition, PeerUnavailable, StaleAttempt
from tg_actors.messages import TOPIC_STATUS, RunStateChanged
from tg_actors.runstate import ACTIVE, RunState, check_transition

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
    run_id: str = ""  # minted by the Scheduler, so a retried insert recognises its own row


def new_run_id() -> str:
    return uuid.uuid4().hex


class StateManager:
    def __init__(
        self,
        db: interfaces.Database,
        broker: BrokerClient,
        *,
        db_retry_s: float = DB_RETRY_S,
        publish_retry_s: float = PUBLISH_RETRY_S,
        new_id: Callable[[], str] = new_run_id,
    ) -> None:
        self._db = db
        self._broker = broker
        self._db_retry_s = db_retry_s
        self._publish_retry_s = publish_retry_s
        self.new_id = new_id
        self._runs: dict[str, TrackedRun] = {}  # active runs only
        # insertion-ordered (a dict, not a set): the same seed replays the same order
        self._by_job: defaultdict[str, dict[str, None]] = defaultdict(dict)
        self._outbox: list[RunStateChanged] = []

    async def flush(self) -> None:
        """Publish the state changes made since the last flush, in order, in one call."""
        if self._outbox:
            pending, self._outbox = self._outbox, []
            try:  # a restarting broker is waited out; if it stays down they go with the next
                await self._broker.publish(TOPIC_STATUS, *pending, retry_for=self._publish_retry_s)
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
        self._by_job[run.job][run.run_id] = None

    def _untrack(self, run: TrackedRun) -> None:
        self._runs.pop(run.run_id, None)
        ids = self._by_job.get(run.job)
        if ids is not None:
            ids.pop(run.run_id, None)
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
        jobs); None for an entry whose (job, scheduled_for) already had a run. Entries keep
        the run_id they were given (minted once): a retry after a lost answer is recognised."""
        ids = await self._db.create_runs(
            [
                {
                    "run_id": e.run_id or self.new_id(),
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

    def forget(self, run_id: str) -> None:
        """Stop tracking the run (a boot tried again reloads everything from DuckDB)."""
        run = self._runs.get(run_id)
        if run is not None:
            self._untrack(run)

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
        the Database already wrote the state (the engine's commit is the source of truth).
        Persisted as a conditional update on the run's current attempt and state: when DuckDB
        holds something newer, that is adopted instead (the returned run shows it)."""
        run = self._runs[run_id]
        previous = run.state
        check_transition(run_id, previous, target)
        if persist:
            expect = run.attempt
            try:  # conditional: a late event must not overwrite what DuckDB already holds
                if target is RunState.FAILED:  # for good: nothing of it is kept
                    await self._until_written(
                        lambda: self._db.fail_run(
                            run_id, expect_state=previous.value, expect_attempt=expect, **fields
                        ),
                        run_id,
                    )
                else:
                    await self._until_written(
                        lambda: self._db.update_run(
                            run_id,
                            expect_state=previous.value,
                            expect_attempt=expect,
                            state=target.value,
                            **fields,
                        ),
                        run_id,
                    )
            except StaleAttempt:
                return await self.refresh(run)
            except IllegalTransition as exc:
                if exc.current != target.value:  # else: our own write, repeated after a crash
                    return await self._adopt_newer(run, exc)
        if "attempt" in fields:
            run.attempt = int(fields["attempt"])
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

    async def _until_written(self, write: Callable[[], Awaitable[Any]], run_id: str) -> None:
        """A conditional run update, waiting out a Database restart (a few seconds, during
        which calls fail at once): else a state change made then would be lost, e.g. a failed
        attempt never retried. Safe to repeat: the update is conditional on the state it
        expects."""
        deadline = time.monotonic() + self._db_retry_s
        while True:
            try:
                await write()
                return
            except PeerUnavailable:
                if time.monotonic() >= deadline:
                    raise
                log.warning("run %s: database unavailable; retrying its state change", run_id)
                await asyncio.sleep(0.25)

    async def redispatch(self, run: TrackedRun) -> bool:
        """A queued run handed out but never begun gets the next attempt number (no state
        change), fencing off the first TriggerRun should an engine still pick it up. False
        when DuckDB held something newer (then adopted)."""
        try:
            await self._until_written(
                lambda: self._db.update_run(
                    run.run_id,
                    expect_state=RunState.QUEUED.value,
                    expect_attempt=run.attempt,
                    attempt=run.attempt + 1,
                ),
                run.run_id,
            )
        except (StaleAttempt, IllegalTransition):
            await self.refresh(run)
            return False
        run.attempt += 1
        return True

    def ended(self, run_id: str, state: RunState) -> TrackedRun | None:
        """DuckDB ended the run already (an engine's commit wrote `succeeded`): track and
        announce that, without writing. None if the run is no longer tracked."""
        run = self._runs.get(run_id)
        if run is None:
            return None
        previous = run.state
        run.state = state
        self._untrack(run)
        log.info("run_state run_id=%s job=%s from=%s to=%s", run_id, run.job, previous, state)
        self._outbox.append(self._changed(run, previous))
        return run

    async def refresh(self, run: TrackedRun) -> TrackedRun:
        """Take DuckDB's state and attempt for the run (read back after a refused write)."""
        row = await self._db.get_run(run.run_id)
        if row is None:
            self._untrack(run)
            return run
        return self.sync(row) or run

    def sync(self, row: dict[str, Any]) -> TrackedRun | None:
        """Make the tracked run match its DuckDB row (reconcile); adopt it if untracked and
        open. Returns the tracked run, or None when it is ended (and no longer tracked)."""
        run = self._runs.get(row["run_id"])
        state = RunState(row["state"])
        if run is None:
            return self.adopt(row) if state in ACTIVE else None
        if (run.state, run.attempt) != (state, row["attempt"]):
            log.info(
                "run %s is %s (attempt %s) in the database; keeping that",
                run.run_id,
                state,
                row["attempt"],
            )
            previous = run.state
            run.state, run.attempt = state, int(row["attempt"])
            if state not in ACTIVE:
                self._untrack(run)
            if previous is not state:
                self._outbox.append(self._changed(run, previous))
        return run if state in ACTIVE else None

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
            state=run.state,
            previous=previous,
            trigger=run.trigger,
            error=error,
            attempt=run.attempt,
        )
