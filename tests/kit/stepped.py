"""The Scheduler's timing on a stepped clock, in one process: the real Scheduler
(`run_loops=False`), the real DuckStore on an in-memory DuckDB, the broker's own `Topics`
core, and engines that end each run a set number of steps after it began. (No data moves:
the engines change only the run's row, as begin and commit do; the engine protocol itself is
what tests/sim drives.)

Nothing sleeps: `step()` advances one clock (wall and monotonic together) by `dt` and turns
every loop once, in a fixed order: the Scheduler's tick, each engine, then the deliveries of
`config` and `status`. So a test chooses every instant, a run lasts exactly `run_steps * dt`,
and a count of runs means the same on a loaded machine as on an idle one. The simulation
(tests/sim) drives the same Scheduler under random faults; this is its small, fault-free
sibling for the cases one names (once per tick, overlap policies, catch-up, pause).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.kit.stepclock import SteppedClock
from tg_actors.broker.topics import Topics
from tg_actors.errors import IllegalTransition, StaleAttempt
from tg_actors.messages import (
    TOPIC_CONFIG,
    TOPIC_STATUS,
    TOPIC_TRIGGERS,
    JobPauseChanged,
    RunCancelled,
    RunFinished,
    RunStarted,
    TriggerRun,
)
from tg_actors.names import ENGINE_WORK_GROUP
from tg_actors.runstate import RunState
from tg_actors.scheduler.actor import GROUP, LEASE_GROUP, Scheduler
from tg_actors.store.duckdb import DuckStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # a whole second: interval ticks fall on T0 + k s


class _Method:
    def __init__(self, call: Callable[..., Any]) -> None:
        self._call = call

    async def remote(self, *args: Any, **kwargs: Any) -> Any:
        result = self._call(*args, **kwargs)
        return await result if hasattr(result, "__await__") else result


class Local:
    """A plain object seen as an actor handle: `handle.name.remote(...)` awaits the call."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self._target, name))


class LocalBroker(Topics):
    """The broker's core as the Scheduler's BrokerClient calls it (`shared` is a Ray detail)."""

    def subscribe(  # type: ignore[override]
        self, topic: str, group: str, *, shared: bool = False, lossy: bool = False
    ) -> None:
        super().subscribe(topic, group, lossy=lossy)


@dataclass
class Held:
    message: TriggerRun
    left: int  # turns until it ends


@dataclass
class StepEngine:
    """An engine that begins each run it takes (DuckDB: `running`, started_at, engine) and
    ends it (`succeeded`, finished_at) `run_steps` turns later, each a conditional update of
    the run's row as begin and commit are; its events are those the real engine sends."""

    id: str
    store: DuckStore
    broker: LocalBroker
    now: Callable[[], datetime]
    run_steps: int
    slots: int = 3
    work: dict[str, Held] = field(default_factory=dict)  # by run_id

    async def stats(self) -> dict[str, Any]:
        runs = {run_id: held.message.job for run_id, held in self.work.items()}
        return {"engine": self.id, "current_runs": runs}

    async def turn(self) -> None:
        """End the runs whose time is up, then take triggers while a slot is free."""
        for run_id, held in list(self.work.items()):
            held.left -= 1
            if held.left <= 0:
                del self.work[run_id]
                await self._commit(held.message)
        free = self.slots - len(self.work)
        if free > 0:
            for message in await self.broker.consume(TOPIC_TRIGGERS, ENGINE_WORK_GROUP, free, 0):
                if message.run_id not in self.work:  # a duplicate trigger: begun once
                    await self._begin(message)

    def _ids(self, m: TriggerRun) -> dict[str, Any]:
        return {"run_id": m.run_id, "job": m.job, "attempt": m.attempt}

    async def _begin(self, m: TriggerRun) -> None:
        now = self.now()
        try:
            self.store.update_run(
                m.run_id,
                expect_state=RunState.QUEUED,
                expect_attempt=m.attempt,
                state=RunState.RUNNING,
                started_at=now,
                engine=self.id,
            )
        except StaleAttempt:  # superseded meanwhile: not run (as the real engine)
            return
        except IllegalTransition:  # ended meanwhile (cancelled): refused, and said so
            await self.broker.publish(TOPIC_STATUS, [RunCancelled(**self._ids(m))])
            return
        self.work[m.run_id] = Held(m, self.run_steps)
        started = RunStarted(**self._ids(m), engine=self.id, ts=now)
        await self.broker.publish(TOPIC_STATUS, [started])

    async def _commit(self, m: TriggerRun) -> None:
        try:
            self.store.update_run(
                m.run_id,
                expect_state=RunState.RUNNING,
                expect_attempt=m.attempt,
                state=RunState.SUCCEEDED,
                finished_at=self.now(),
                rows_loaded=0,
                pages=1,
            )
        except StaleAttempt:  # superseded: the new attempt owns the run (as the real engine)
            return
        except IllegalTransition:  # it ended meanwhile (cancelled)
            await self.broker.publish(TOPIC_STATUS, [RunCancelled(**self._ids(m))])
            return
        finished = RunFinished(**self._ids(m), rows=0, pages=1, seconds=0.0)
        await self.broker.publish(TOPIC_STATUS, [finished])


class SteppedSystem:
    """The jobs (stored specs) in DuckDB, a Scheduler, `engines` StepEngines, one clock."""

    def __init__(
        self,
        jobs: list[dict[str, Any]],
        *,
        run_steps: int,
        dt: float = 0.25,
        engines: int = 1,
        slots: int = 3,
    ) -> None:
        self.dt = dt
        self.clock = SteppedClock(T0)
        self.store = DuckStore(":memory:", clock=self.clock.now)
        self.store.con.execute("SET threads = 1")
        self.broker = LocalBroker()
        self.broker.subscribe(TOPIC_TRIGGERS, ENGINE_WORK_GROUP)
        self.engines = [
            StepEngine(f"engine-{i}", self.store, self.broker, self.clock.now, run_steps, slots)
            for i in range(engines)
        ]
        self.slots = slots
        for spec in jobs:
            self.store.upsert_job(spec["name"], spec, "file")
        self.scheduler: Scheduler | None = None
        self._ids = 0

    def _new_id(self) -> str:
        self._ids += 1
        return f"r{self._ids:05d}"

    async def start(self) -> None:
        """A Scheduler (again, after `crash`): it reloads jobs and open runs from DuckDB."""
        self.scheduler = Scheduler(
            Local(self.store),
            Local(self.broker),
            [Local(e) for e in self.engines],
            clock=self.clock.now,
            monotonic=self.clock.monotonic,
            slots=self.slots,
            lease_seconds=600.0,  # no heartbeats here: no lease may run out
            run_loops=False,
            new_id=self._new_id,
            db_retry_s=0.0,
            publish_retry_s=0.0,
        )
        await self.scheduler.start()

    def crash(self) -> None:
        """The Scheduler is gone; engines work on, their events wait in its consumer groups."""
        self.scheduler = None

    async def step(self, count: int = 1) -> None:
        for _ in range(count):
            self.clock.advance(self.dt)
            await self.turn()

    async def turn(self) -> None:
        s = self.scheduler
        if s is not None:
            await s.tick_once()
        for engine in self.engines:
            await engine.turn()
        if s is None:
            return
        changes = await self.broker.consume(TOPIC_CONFIG, GROUP, 1000, 0)
        if changes:
            await s._on_config(changes)
        for message in await self.broker.consume(TOPIC_STATUS, LEASE_GROUP, 1000, 0):
            await s._on_sign_of_life(message)
        batch = await self.broker.consume(TOPIC_STATUS, GROUP, 1000, 0)
        if batch:
            await s._on_status(batch)

    async def until(self, what: str, done: Callable[[], bool], max_steps: int) -> int:
        """Step until `done()`; the steps it took. AssertionError past `max_steps`."""
        for taken in range(max_steps + 1):
            if done():
                return taken
            await self.step()
        raise AssertionError(f"{what}: not within {max_steps} steps")

    async def set_paused(self, job: str, paused: bool) -> None:
        """What the ConfigManager does: DuckDB first, then the `config` message."""
        self.store.set_paused(job, paused)
        await self.broker.publish(TOPIC_CONFIG, [JobPauseChanged(name=job, paused=paused)])

    def runs(self, job: str) -> list[dict[str, Any]]:
        """The job's runs in tg.runs, oldest tick first."""
        return sorted(self.store.list_runs(job=job, limit=100_000), key=ticked)

    def seconds(self, when: datetime) -> float:
        """`when` as seconds since T0."""
        return (when - T0).total_seconds()


def ticked(run: dict[str, Any]) -> datetime:
    when: datetime = run["scheduled_for"]
    return when
