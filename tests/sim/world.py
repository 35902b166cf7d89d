"""The World: the real Scheduler (with its StateManager and ErrorHandler) and the real
DuckStore on in-memory DuckDB, wired to simulated peers, stepped by one seeded RNG.

Each step advances the clock a little and takes one action: a Scheduler tick or a delivery,
an engine's next await, a user's call (trigger, cancel, pause, edit, delete), or a fault
(a Database outage or lost reply, a broker restart, loss/duplication/reordering, an engine or
Scheduler crash, a stalled Scheduler, a slow engine). After every step the invariants in
checks.py run; at the end every fault heals and the system must settle.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tests.sim import checks
from tests.sim.peers import Handle, Process, SimBroker, SimClock, SimDown, SimEngine
from tg_actors.messages import (
    TOPIC_CONFIG,
    TOPIC_STATUS,
    JobDeleted,
    JobPauseChanged,
    JobUpserted,
)
from tg_actors.scheduler.actor import GROUP, LEASE_GROUP, Scheduler
from tg_actors.store.duckdb import DuckStore

LEASE_S = 10.0
TURN_S = 1.0  # the Scheduler's loop takes a turn at least this often (sim time) when up
SETTLE_STEPS = 3000  # at most, steps of 0.1 s with every fault healed, at the end of a seed


@dataclass
class SimJob:
    name: str
    pages: int
    schedule: dict[str, Any] | None
    after: list[str] = field(default_factory=list)
    retries: int = 3
    max_active: int = 1
    role: str = ""  # stable | catchup_none | pausable | editable | dependent

    def spec(self, interval: str | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": self.name,
            "max_active_runs": self.max_active,
            "retries": {"max_attempts": self.retries, "backoff": "1s", "max_backoff": "4s"},
            "source": {
                "type": "http",
                "url": "http://127.0.0.1:9/sim",
                "incremental": {"cursor_field": "id", "param": "since"},
            },
            "destination": {"table": f"sim_{self.name}"},
        }
        if self.schedule is not None:
            spec["schedule"] = dict(self.schedule)
            if interval is not None:
                spec["schedule"]["interval"] = interval
        if self.after:
            spec["triggers"] = {"after": list(self.after)}
        return spec


JOBS = (
    SimJob(
        "a",
        3,
        {"interval": "10s", "catchup": "all", "overlap": "allow"},
        max_active=2,
        role="stable",
    ),
    SimJob("b", 1, None, after=["a"], retries=2, role="dependent"),
    SimJob(
        "c",
        1,
        {"interval": "14s", "catchup": "none", "overlap": "skip"},
        retries=1,
        role="catchup_none",
    ),
    SimJob("p", 2, {"interval": "8s", "catchup": "all", "overlap": "allow"}, role="pausable"),
    SimJob("e", 1, {"interval": "12s", "catchup": "latest"}, retries=2, role="editable"),
)


class Trace:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)


class World:
    def __init__(self, seed: int, steps: int, *, verbose: bool = False) -> None:
        self.seed, self.steps = seed, steps
        self.rng = random.Random(seed)
        self.clock = SimClock()
        self.lines: list[str] = []
        self.verbose = verbose
        self.step_no = 0
        self.faults = True
        # today's engine behaviour vs the protocol's (kept switchable for the record)
        from tg_actors.messages import RunFailed

        self.events_carry_attempt = "attempt" in RunFailed.model_fields
        self.engine_dedupes = self.events_carry_attempt
        self.source_failure = 0.04
        self._cursor = itertools.count(5)  # 5, 6, ... 9, 10: crosses a digit boundary
        self._ids = itertools.count(1)
        self.store = DuckStore(":memory:", clock=self.clock.now)
        self.store.con.execute("SET threads = 1")
        self.db = Process("database", self, lost_reply=0.03)
        self.broker_proc = Process("broker", self, lost_reply=0.01)
        self.broker = SimBroker(self)
        self.engines = [SimEngine(f"engine-{i}", self, slots=3) for i in range(2)]
        self.engine_procs = [Process(e.id, self, lost_reply=0.0) for e in self.engines]
        self.jobs_by_name = {j.name: j for j in JOBS}
        self.scheduler: Scheduler | None = None
        self.sched_booted = False
        self.sched_stalled_until = -1.0
        self.last_turn = 0.0
        self.incarnation = 0
        self.model = checks.Model(self)

    # -- plumbing the peers use ---------------------------------------------------------

    def trace(self, line: str) -> None:
        text = f"[{self.step_no:4d} t={self.clock.seconds:7.2f}] {line}"
        self.lines.append(text)
        if self.verbose:
            print(text)

    def next_cursor(self) -> int:
        return next(self._cursor)

    def new_id(self) -> str:
        return f"r{next(self._ids):04d}"

    async def db_call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "commit_runs":  # the one call that writes data tables (staging is in tg)
            self.model.dirty = True
        return await Handle(self.store, self.db).__getattr__(name).remote(*args, **kwargs)

    async def broker_call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return await Handle(self.broker, self.broker_proc).__getattr__(name).remote(*args, **kwargs)

    def began(self, run_id: str, attempt: int, engine: str, incarnation: int, cursor: int) -> None:
        self.model.began(run_id, attempt, engine, incarnation, cursor)

    # -- set-up -------------------------------------------------------------------------

    async def setup(self) -> None:
        for job in JOBS:
            self.store.upsert_job(job.name, job.spec(), "file")
        self.db.writes += 1
        self.model.created(self.clock.now())
        await self.start_scheduler()

    async def start_scheduler(self) -> None:
        self.incarnation += 1
        self.scheduler = make_scheduler(self)
        self.sched_booted = False
        self.trace(f"scheduler #{self.incarnation} starts")
        await self.try_boot()

    async def try_boot(self) -> None:
        assert self.scheduler is not None
        try:
            await self.scheduler.start()
        except Exception as exc:
            self.trace(f"scheduler boot failed: {exc!r}")
            return
        self.sched_booted = True
        self.model.scheduler_up(self.clock.seconds)
        self.trace("scheduler booted")

    # -- stepping -----------------------------------------------------------------------

    async def run(self) -> None:
        await self.setup()
        self.check()
        for _ in range(self.steps):
            await self.step()
            self.check()
        await self.settle()

    def check(self) -> None:
        problems = self.model.check(self.clock.now())
        if problems:
            raise checks.Violation(self, problems)

    async def step(self) -> None:
        self.step_no += 1
        self.clock.advance(
            self.rng.choice((0.1, 0.2, 0.3, 0.5, 0.8, 1.2) if self.faults else (0.1,))
        )
        await self.heartbeats()
        if self.clock.seconds - self.last_turn >= TURN_S and self._scheduler_takes_turns():
            await self.sched_tick()  # the real loop turns every tick_seconds, whatever else
        actions = self.actions()
        names = [a[0] for a in actions]
        weights = [a[1] for a in actions]
        name = self.rng.choices(names, weights)[0]
        await {a[0]: a[2] for a in actions}[name]()

    def actions(self) -> list[tuple[str, float, Callable[[], Any]]]:
        out: list[tuple[str, float, Callable[[], Any]]] = []
        s = self.scheduler
        up = s is not None and self.clock.seconds >= self.sched_stalled_until
        if up and self.sched_booted:
            out += [
                ("tick", 14, self.sched_tick),
                ("status", 14, self.deliver_status),
                ("leases", 5, self.deliver_leases),
                ("config", 4, self.deliver_config),
            ]
        elif up:
            out.append(("boot", 6, self.try_boot))
        for engine in self.engines:
            if engine.alive:
                out.append((f"take:{engine.id}", 6, lambda e=engine: self.engine_take(e)))
                out.append((f"ctl:{engine.id}", 2, lambda e=engine: self.engine_control(e)))
                if engine.attempts:
                    out.append((f"adv:{engine.id}", 16, lambda e=engine: self.engine_advance(e)))
        if self.faults:
            out += self.fault_actions()
        return out

    def fault_actions(self) -> list[tuple[str, float, Callable[[], Any]]]:
        out: list[tuple[str, float, Callable[[], Any]]] = [
            ("trigger", 1.0, self.user_trigger),
            ("cancel", 0.8, self.user_cancel),
            ("pause", 0.8, self.user_pause),
            ("edit", 0.4, self.user_edit),
            ("db_outage", 0.5, self.db_outage),
            ("broker_restart", 0.3, self.broker_restart),
            ("broker_weather", 0.6, self.broker_weather),
            ("sched_stall", 0.3, self.sched_stall),
        ]
        if self.scheduler is not None:
            out.append(("sched_crash", 0.35, self.sched_crash))
        else:
            out.append(("sched_restart", 4, self.start_scheduler))
        if not self.model.deleted_at and self.clock.seconds > 60:
            out.append(("delete", 0.15, self.user_delete))
        for engine in self.engines:
            if engine.alive:
                out.append((f"crash:{engine.id}", 0.4, lambda e=engine: self.engine_crash(e)))
            else:
                out.append((f"restart:{engine.id}", 3, lambda e=engine: self.engine_restart(e)))
        return out

    # -- Scheduler actions: what its loops do, one turn each ------------------------------

    async def guarded(self, what: str, call: Callable[[], Any]) -> None:
        """The real loops log a failed turn and go on: so does the simulation."""
        try:
            await call()
        except Exception as exc:
            self.trace(f"scheduler {what} failed: {type(exc).__name__}: {exc}")

    def _scheduler_takes_turns(self) -> bool:
        return (
            self.scheduler is not None
            and self.sched_booted
            and self.clock.seconds >= self.sched_stalled_until
        )

    async def sched_tick(self) -> None:
        assert self.scheduler is not None
        self.last_turn = self.clock.seconds
        await self.guarded("tick", self.scheduler.tick_once)

    async def _deliver(self, topic: str, group: str, handle: Callable[[list[Any]], Any]) -> None:
        try:
            batch = await self.broker_call("consume", topic, group, self.rng.choice((2, 20, 500)))
        except SimDown:
            return
        if batch:
            self.trace(f"deliver {topic}/{group}: " + ", ".join(describe(m) for m in batch))
            await self.guarded(f"{topic}/{group}", lambda: handle(batch))

    async def deliver_status(self) -> None:
        assert self.scheduler is not None
        await self._deliver(TOPIC_STATUS, GROUP, self.scheduler._on_status)

    async def deliver_leases(self) -> None:
        s = self.scheduler
        assert s is not None

        async def each(batch: list[Any]) -> None:
            for message in batch:
                await s._on_sign_of_life(message)

        await self._deliver(TOPIC_STATUS, LEASE_GROUP, each)

    async def deliver_config(self) -> None:
        s = self.scheduler
        assert s is not None

        await self._deliver(TOPIC_CONFIG, GROUP, s._on_config)

    async def sched_crash(self) -> None:
        self.trace(f"scheduler #{self.incarnation} crashes")
        self.scheduler = None
        self.sched_booted = False
        self.model.scheduler_down(self.clock.seconds)

    async def sched_stall(self) -> None:
        # busy (a long GC, a slow call): up, but takes no turn for a while
        self.sched_stalled_until = self.clock.seconds + self.rng.uniform(3, 9)
        self.model.stalled(self.clock.seconds, self.sched_stalled_until)
        self.trace(f"scheduler stalls until t={self.sched_stalled_until:.1f}")

    # -- engines ---------------------------------------------------------------------------

    async def heartbeats(self) -> None:
        for engine in self.engines:
            if engine.alive and self.clock.seconds - engine.last_beat >= 2.0:
                engine.last_beat = self.clock.seconds
                await engine.heartbeat()

    async def engine_take(self, engine: SimEngine) -> None:
        try:
            await engine.take()
        except SimDown:
            pass

    async def engine_control(self, engine: SimEngine) -> None:
        try:
            await engine.control()
        except SimDown:
            pass

    async def engine_advance(self, engine: SimEngine) -> None:
        await engine.advance(self.rng)

    async def engine_crash(self, engine: SimEngine) -> None:
        self.trace(f"{engine.id} crashes holding {sorted(engine.attempts)}")
        engine.alive = False
        engine.attempts.clear()
        self.model.engine_died(engine.id, engine.incarnation, self.clock.seconds)

    async def engine_restart(self, engine: SimEngine) -> None:
        engine.alive = True
        engine.incarnation += 1
        engine.stats_fail = self.rng.choice((0.0, 0.0, 0.5))
        self.trace(f"{engine.id} restarts (#{engine.incarnation})")
        from tg_actors.messages import EngineStarted

        await engine.publish(EngineStarted(engine=engine.id))

    # -- users --------------------------------------------------------------------------

    async def user_trigger(self) -> None:
        s = self.scheduler
        if s is None or not self.sched_booted or self.clock.seconds < self.sched_stalled_until:
            return
        job = self.rng.choice(["a", "b", "c", "p"])
        try:
            run_id = await s.trigger(job)
        except Exception as exc:
            self.trace(f"user trigger {job}: error {type(exc).__name__}: {exc}")
            self.model.trigger_failed(job)
            return
        self.trace(f"user trigger {job}: {run_id}")

    async def user_cancel(self) -> None:
        s = self.scheduler
        if s is None or not self.sched_booted or self.clock.seconds < self.sched_stalled_until:
            return
        open_runs = [r for r, st in self.model.states.items() if st[0] in checks.OPEN]
        if not open_runs:
            return
        run_id = self.rng.choice(sorted(open_runs))
        try:
            await s.cancel(run_id)
            self.trace(f"user cancel {run_id}: ok")
        except Exception as exc:
            self.trace(f"user cancel {run_id}: {type(exc).__name__}: {exc}")

    async def _config(self, message: Any) -> None:
        """The ConfigManager's part: DuckDB first, then the broker (which may lose it)."""
        try:
            await self.broker_call("publish", TOPIC_CONFIG, [message])
        except SimDown:
            self.trace(f"config message lost: {describe(message)}")

    async def user_pause(self) -> None:
        if self.db.down:
            return
        paused = not self.model.paused
        self.store.set_paused("p", paused)
        self.db.writes += 1
        self.model.pause_changed(paused, self.clock.now())
        self.trace(f"user {'pauses' if paused else 'resumes'} p")
        await self._config(JobPauseChanged(name="p", paused=paused))

    async def user_edit(self) -> None:
        if self.db.down or self.model.deleted_at:
            return
        job = self.jobs_by_name["e"]
        interval = self.rng.choice(("12s", "18s"))
        spec = job.spec(interval)
        self.store.upsert_job("e", spec, "api")
        self.db.writes += 1
        self.trace(f"user edits e: interval {interval}")
        await self._config(JobUpserted(name="e", spec=spec, paused=False))

    async def user_delete(self) -> None:
        if self.db.down:
            return
        self.store.delete_job("e")
        self.db.writes += 1
        self.model.deleted_at = self.clock.now()
        self.trace("user deletes e")
        await self._config(JobDeleted(name="e"))

    # -- faults -------------------------------------------------------------------------

    async def db_outage(self) -> None:
        self.db.down_until = self.clock.seconds + self.rng.uniform(0.5, 6)
        self.model.db_down(self.clock.seconds, self.db.down_until)
        self.trace(f"database restarts: down until t={self.db.down_until:.1f}")

    async def broker_restart(self) -> None:
        self.broker.restart()
        self.broker_proc.down_until = self.clock.seconds + self.rng.uniform(0.2, 2)
        self.trace(f"broker restarts: topics lost, down until t={self.broker_proc.down_until:.1f}")

    async def broker_weather(self) -> None:
        b = self.broker
        b.loss, b.dup, b.reorder = (self.rng.choice((0.0, 0.0, 0.05, 0.2)) for _ in range(3))
        self.trace(f"broker: loss {b.loss} dup {b.dup} reorder {b.reorder}")

    # -- the end: heal everything and let it settle ---------------------------------------

    async def settle(self) -> None:
        self.faults = False
        self.trace("--- faults heal; the system settles ---")
        self.db.down_until = self.broker_proc.down_until = -1.0
        self.sched_stalled_until = -1.0
        self.broker.loss = self.broker.dup = self.broker.reorder = 0.0
        for engine in self.engines:
            engine.stats_fail = 0.0
            if not engine.alive:
                await self.engine_restart(engine)
        if self.scheduler is None:
            await self.start_scheduler()
        healed = self.clock.now()
        # run until everything from before the healing has ended (a backlog drains at the
        # engines' pace), at most SETTLE_STEPS: what is left then is stuck
        for i in range(SETTLE_STEPS):
            await self.step()
            self.check()
            if i % 25 == 24 and i >= 200 and not self.model.check_settled(self.clock.now(), healed):
                break
        problems = self.model.check_settled(self.clock.now(), healed)
        if problems:
            raise checks.Violation(self, problems)


def make_scheduler(world: World) -> Scheduler:
    rng = random.Random(world.rng.random())
    engines = [Handle(e, p) for e, p in zip(world.engines, world.engine_procs, strict=True)]
    kwargs: dict[str, Any] = {
        "tick_seconds": 0.2,
        "slots": 3,  # as many as each simulated engine runs at once
        "lease_seconds": LEASE_S,
        "clock": world.clock.now,
        "run_loops": False,
        "monotonic": world.clock.monotonic,
        "rng": rng,
        "db_retry_s": 0.0,  # a peer that is down answers at once: no real waiting
        "publish_retry_s": 0.0,
    }
    kwargs["new_id"] = world.new_id
    return Scheduler(
        Handle(world.store, world.db), Handle(world.broker, world.broker_proc), engines, **kwargs
    )


def describe(message: Any) -> str:
    kind = type(message).__name__
    run = (
        getattr(message, "run_id", "")
        or getattr(message, "name", "")
        or getattr(message, "engine", "")
    )
    attempt = getattr(message, "attempt", None)
    return f"{kind}({run}{'/' + str(attempt) if attempt is not None else ''})"


def run_seed(seed: int, steps: int, *, verbose: bool = False) -> World:
    world = World(seed, steps, verbose=verbose)
    asyncio.run(world.run())
    return world


def explore_seed(seed: int, steps: int) -> tuple[int, str]:
    """One seed, for a worker process: (steps taken, the violation's report or "")."""
    logging.disable(logging.CRITICAL)  # the Scheduler logs every fault it rides out
    try:
        return run_seed(seed, steps).step_no, ""
    except checks.Violation as exc:
        return exc.world.step_no, str(exc)


__all__ = ["LEASE_S", "World", "explore_seed", "run_seed", "timedelta", "datetime"]
