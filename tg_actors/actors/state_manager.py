"""StateManager: the Scheduler's record of run states.

Every change is checked against the transition table (core.runstate), persisted to `tg.runs`
through the Database actor, then published on the `status` topic — in that order, so what
subscribers see is already true in DuckDB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tg_actors.broker_client import BrokerClient
from tg_actors.core.runstate import ACTIVE, RunState, check_transition
from tg_actors.errors import IllegalTransition
from tg_actors.messages import TOPIC_STATUS, RunStateChanged

log = logging.getLogger(__name__)


@dataclass
class TrackedRun:
    run_id: str
    job: str
    state: RunState
    trigger: str
    attempt: int
    priority: int
    scheduled_for: datetime


class StateManager:
    def __init__(self, db: Any, broker: BrokerClient) -> None:
        self._db = db
        self._broker = broker
        self._runs: dict[str, TrackedRun] = {}

    def get(self, run_id: str) -> TrackedRun | None:
        return self._runs.get(run_id)

    def active(self, job: str | None = None) -> list[TrackedRun]:
        return [r for r in self._runs.values() if r.state in ACTIVE and job in (None, r.job)]

    async def create(
        self,
        job: str,
        scheduled_for: datetime,
        trigger: str,
        priority: int,
        state: RunState = RunState.QUEUED,
    ) -> TrackedRun | None:
        """Insert the run (unique on job + scheduled_for). None if that tick already has one."""
        run_id = await self._db.create_run.remote(
            job, scheduled_for, trigger, state=state.value, priority=priority
        )
        if run_id is None:
            return None
        run = TrackedRun(run_id, job, state, trigger, 1, priority, scheduled_for)
        if state in ACTIVE:
            self._runs[run_id] = run
        log.info(
            "run_state run_id=%s job=%s from=- to=%s trigger=%s attempt=1 scheduled_for=%s",
            run_id,
            job,
            state,
            trigger,
            scheduled_for.isoformat(),
        )
        await self._publish(run, None)
        return run

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
        self._runs[run.run_id] = run
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
                await self._db.update_run.remote(
                    run_id, expect_state=previous.value, state=target.value, **fields
                )
            except IllegalTransition as exc:
                return await self._adopt_newer(run, exc)
        run.state = target
        if target not in ACTIVE:
            del self._runs[run_id]
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
        await self._publish(run, previous, fields.get("error"))
        return run

    async def _adopt_newer(self, run: TrackedRun, exc: IllegalTransition) -> TrackedRun:
        """DuckDB moved on without us (an engine committed while our event waited): take its
        state. An ended run is no longer tracked; its engine's own event frees the engine."""
        current = RunState(exc.current)
        log.info("run %s is already %s in the database; keeping that", run.run_id, current)
        run.state = current
        if current not in ACTIVE:
            self._runs.pop(run.run_id, None)
        return run

    async def _publish(
        self, run: TrackedRun, previous: RunState | None, error: str | None = None
    ) -> None:
        await self._broker.publish(
            TOPIC_STATUS,
            RunStateChanged(
                run_id=run.run_id,
                job=run.job,
                state=run.state.value,
                previous=previous.value if previous else None,
                trigger=run.trigger,
                error=error,
            ),
        )
