"""EnginePool actor: owns the SyncEngine actors and changes how many there are at run time.

Engines are named actors (`tg_engine_{i}`, engine id `engine-{i}`), made by the EngineFactory
that runtime.py hands the pool with their Ray options: detached and spread over the cluster's
nodes. Detached because Ray kills an actor with its owner: should the pool restart, the
engines and their runs carry on, and the restarted pool finds them again by name.

Adding engines waits until each has joined the work queue, then raises the Scheduler's
capacity. Removing lowers the capacity first (nothing new is dispatched to the removed
share), drains the engines (no new work; the runs in hand get `grace` seconds to end), stops
them, and hands the runs they had to interrupt back to the Scheduler, which retries them
elsewhere from their last staged page.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray

from tg_actors import interfaces
from tg_actors.broker.client import BrokerClient
from tg_actors.commands.desk import POOL_KINDS, CommandDesk
from tg_actors.commands.reply import Reply
from tg_actors.engine.actor import SyncEngine, control_group
from tg_actors.errors import NoCapacity
from tg_actors.lifecycle import Boot
from tg_actors.messages import TOPIC_COMMANDS, TOPIC_CONTROL, ScaleEngines
from tg_actors.names import ENGINE_PREFIX, MAX_ENGINES, POOL_GROUP
from tg_actors.peer import Peer, face

log = logging.getLogger(__name__)
ENGINE_NAME = re.compile(rf"^{ENGINE_PREFIX}(\d+)$")
PLACE_TIMEOUT_S = 120.0  # an engine no node can hold waits silently: say so instead


def engine_name(index: int) -> str:
    return f"{ENGINE_PREFIX}{index}"


def engine_id(index: int) -> str:
    return f"engine-{index}"


def plan_scale(current: list[int], target: int) -> tuple[list[int], list[int]]:
    """(indexes to add, indexes to remove) to go from `current` engines to `target`: new
    engines fill the lowest free indexes, the newest (highest) go first."""
    if not 1 <= target <= MAX_ENGINES:
        raise ValueError(f"engine count must be between 1 and {MAX_ENGINES}, not {target}")
    have = sorted(set(current))
    if target <= len(have):
        return [], sorted(have[target:], reverse=True)
    free = (i for i in range(MAX_ENGINES + len(have)) if i not in set(have))
    return [next(free) for _ in range(target - len(have))], []


def existing_engines(namespace: str) -> list[int]:
    """Indexes of the engines alive in `namespace` (found by name)."""
    found = []
    for actor in ray.util.list_named_actors(all_namespaces=True):
        match = ENGINE_NAME.match(actor["name"])
        if match and actor["namespace"] == namespace:
            found.append(int(match.group(1)))
    return sorted(found)


@dataclass(frozen=True)
class EngineFactory:
    """Makes (or finds, by name) the engine actor of one index. `options` are its Ray options,
    decided by runtime.py, not here; the factory adds only the name. `args` are what every
    engine is built with after its id: (database, broker, rate limiter, slots)."""

    args: tuple[Any, ...]
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_cpus(self) -> float:
        return float(self.options.get("num_cpus", 0))

    def create(self, index: int) -> Any:
        actor = ray.remote(SyncEngine).options(name=engine_name(index), **self.options)
        return actor.remote(engine_id(index), *self.args)


class EnginePool:
    def __init__(
        self,
        namespace: str,
        engines: EngineFactory,
        broker: Any,
        scheduler: Any,
        grace: float | None = None,
        place_timeout: float = PLACE_TIMEOUT_S,
        db: Any = None,
    ) -> None:
        """`db`: the Database, where the `scale` commands of the API and the UI are recorded
        (tg.commands); without one the pool reads no commands."""
        self._place_timeout = place_timeout
        self._ns = namespace
        self._engines = engines
        self._broker = BrokerClient(broker)
        self._scheduler = scheduler
        self._grace = grace
        self._indexes: list[int] = []
        self._lock = asyncio.Lock()
        self._desk = (
            CommandDesk(POOL_KINDS, self._command, face(db), self._broker.reply_all)
            if db is not None
            else None
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._boot = Boot(self._start)

    async def _start(self) -> None:
        self._indexes = existing_engines(self._ns)  # after a restart: the engines carry on
        if self._indexes:
            log.info("engine pool: found %d engine(s)", len(self._indexes))
        if self._desk is not None and not self._tasks:
            await self._broker.subscribe(TOPIC_COMMANDS, POOL_GROUP)
            pump = self._broker.pump_batches(
                TOPIC_COMMANDS, POOL_GROUP, self._desk.on_batch, self._stop
            )
            self._tasks.append(asyncio.create_task(pump))

    async def _command(self, command: ScaleEngines) -> Reply:
        """`scale` from the API or the UI: what `scale` answers."""
        outcome = await self.scale(command.count, command.grace)
        return Reply(command.command_id, outcome, outcome=f"scaled to {command.count} engines")

    async def ping(self) -> str:
        await self._boot.wait()
        return "ok"

    async def names(self) -> list[str]:
        await self._boot.wait()
        return [engine_name(i) for i in self._indexes]

    async def peers(self) -> list[Peer]:
        return [Peer(name, self._ns) for name in await self.names()]

    async def scale(self, count: int, grace: float | None = None) -> dict[str, Any]:
        """Add or remove engines until there are `count`. `grace`: seconds a removed engine's
        runs get to end (None: the pool's default, TG_STOP_GRACE_SECONDS). Returns
        {"added": [...], "removed": [...], "interrupted": [run ids], "engines": [...]}."""
        await self._boot.wait()
        wait = self._grace if grace is None else grace
        async with self._lock:
            add, remove = plan_scale(self._indexes, count)
            if add:
                await self._add(add)
            interrupted: list[str] = []
            if remove:
                interrupted = await self._remove(remove, wait)
            return {
                "added": [engine_name(i) for i in add],
                "removed": [engine_name(i) for i in remove],
                "interrupted": interrupted,
                "engines": [engine_name(i) for i in self._indexes],
            }

    async def describe(self) -> list[dict[str, Any]]:
        """Each engine: name, node, slots and the runs it has now (or why it did not answer)."""
        names = await self.names()

        async def one(name: str) -> dict[str, Any]:
            try:
                handle = ray.get_actor(name, namespace=self._ns)
                stats: dict[str, Any] = await asyncio.wait_for(handle.stats.remote(), 5)
            except Exception as exc:
                return {"name": name, "state": "unavailable", "error": type(exc).__name__}
            return {"name": name, "state": "draining" if stats["draining"] else "up", **stats}

        return list(await asyncio.gather(*(one(name) for name in names)))

    # -- internals ----------------------------------------------------------------------------

    async def _add(self, indexes: list[int]) -> None:
        handles = [self._engines.create(i) for i in indexes]
        starts = [asyncio.ensure_future(handle.start.remote()) for handle in handles]
        done, pending = await asyncio.wait(starts, timeout=self._place_timeout)
        errors = [task.exception() for task in done if task.exception() is not None]
        if pending or errors:
            for handle in handles:  # all or nothing: no half-made scale-up
                ray.kill(handle, no_restart=True)
            if errors:
                raise NoCapacity(f"could not start {len(indexes)} more engine(s): {errors[0]}")
            cpus = self._engines.num_cpus
            need = f"{cpus:g} CPU" if cpus else "no CPU"
            raise NoCapacity(
                f"could not start {len(indexes)} more engine(s) within {self._place_timeout:.0f}s:"
                f" {len(pending)} could not be placed (each needs {need}, TG_ENGINE_NUM_CPUS);"
                " add nodes or ask for fewer"
            )
        self._indexes = sorted(self._indexes + indexes)
        await self._tell_scheduler()
        log.info("engine pool: added %s", [engine_name(i) for i in indexes])

    async def _remove(self, indexes: list[int], grace: float | None) -> list[str]:
        self._indexes = [i for i in self._indexes if i not in indexes]
        await self._tell_scheduler()  # capacity down first: nothing new goes their way

        async def one(index: int) -> list[str]:
            handle = ray.get_actor(engine_name(index), namespace=self._ns)
            try:
                left: list[str] = await handle.drain.remote(grace)
            except Exception:  # already gone: its runs are lost with it
                log.warning("engine %s did not drain", engine_name(index), exc_info=True)
                left = []
            ray.kill(handle, no_restart=True)
            await self._broker.unsubscribe(TOPIC_CONTROL, control_group(engine_id(index)))
            scheduler = self._scheduler_handle()
            if scheduler is not None:
                reason = f"engine removed: {engine_id(index)} was scaled down before the run ended"
                await scheduler.engine_lost.remote(engine_id(index), reason, left)
            return left

        lost = await asyncio.gather(*(one(i) for i in indexes))
        log.info("engine pool: removed %s", [engine_name(i) for i in indexes])
        return [run_id for runs in lost for run_id in runs]

    def _scheduler_handle(self) -> Any:
        """The Scheduler, once it exists (the first engines start before it)."""
        try:
            return ray.get_actor(self._scheduler.name, namespace=self._ns)
        except ValueError:
            return None

    async def _tell_scheduler(self) -> None:
        scheduler = self._scheduler_handle()
        if scheduler is not None:
            await scheduler.set_engines.remote(
                [Peer(engine_name(i), self._ns) for i in self._indexes]
            )


if TYPE_CHECKING:  # the actor keeps the promises of its face: mypy checks this conversion

    def _keeps_its_face(actor: EnginePool) -> interfaces.EnginePool:
        return actor
