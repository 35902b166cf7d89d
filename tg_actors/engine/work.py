"""Where an engine takes its runs from: the engines' group on `triggers`, in one of two shapes.

Engines that compete for work (a pool that can grow) share one `ray.util.queue.Queue`, which
they read directly (SharedWork). A lone engine that nothing scales (`tg run`) reads the same
group as a plain consumer group of the broker (GroupWork): the same messages in the same order,
without the queue's own actor process (~130 MiB and ~0.5 s of CPU to start on 2 cores).
"""

from __future__ import annotations

import queue
from typing import Any, Protocol

from tg_actors.broker.client import BrokerClient
from tg_actors.messages import TOPIC_TRIGGERS, TriggerRun
from tg_actors.names import ENGINE_WORK_GROUP

WAIT_S = 0.5  # how long one take waits for a first message (the loop's stop/drain latency)


class Work(Protocol):
    async def join(self) -> None:
        """Join the group (again, after the broker restarted)."""
        ...

    async def take(self, free: int) -> list[TriggerRun]:
        """Wait up to WAIT_S for one message, then take what else waits, up to `free`."""
        ...


def work_for(broker: BrokerClient, shared: bool) -> Work:
    return SharedWork(broker) if shared else GroupWork(broker)


class SharedWork:
    """The shared group: a Ray queue that the competing engines read directly."""

    def __init__(self, broker: BrokerClient) -> None:
        self._broker = broker
        self._queue: Any = None

    async def join(self) -> None:
        # the queue is an actor the broker owns: it dies with the broker, and a restarted
        # broker makes a new one, so this asks for the group's current queue each time
        self._queue = await self._broker.subscribe(TOPIC_TRIGGERS, ENGINE_WORK_GROUP, shared=True)

    async def take(self, free: int) -> list[TriggerRun]:
        try:
            first = await self._queue.get_async(timeout=WAIT_S)
        except queue.Empty:  # ray.util.queue.Empty is one: no Ray import in this module
            return []
        taken = [first]
        if free > 1:
            actor: Any = self._queue.actor
            waiting = int(await actor.qsize.remote())
            if waiting:
                try:
                    taken += await actor.get_nowait_batch.remote(min(free - 1, waiting))
                except queue.Empty:  # another engine took them meanwhile
                    pass
        return taken


class GroupWork:
    """A lone engine's group: the broker keeps what the engine has no slot for yet."""

    def __init__(self, broker: BrokerClient) -> None:
        self._broker = broker

    async def join(self) -> None:
        await self._broker.subscribe(TOPIC_TRIGGERS, ENGINE_WORK_GROUP)

    async def take(self, free: int) -> list[TriggerRun]:
        return list(await self._broker.consume(TOPIC_TRIGGERS, ENGINE_WORK_GROUP, free, WAIT_S))
