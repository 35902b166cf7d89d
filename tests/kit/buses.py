"""The broker contract's two implementations behind one async face: the pure `Topics` core
in-process, and the Ray `Broker` actor (tests/integration/test_broker_contract.py runs the
same contract over both, as apscheduler runs one suite over every data store)."""

from __future__ import annotations

from typing import Any, Protocol

from tg_actors.broker.topics import Topics


class Bus(Protocol):
    async def subscribe(self, topic: str, group: str, *, lossy: bool = False) -> None: ...
    async def unsubscribe(self, topic: str, group: str) -> None: ...
    async def publish(self, topic: str, messages: list[Any], timeout: float = 30.0) -> int: ...
    async def consume(
        self, topic: str, group: str, max_items: int = 100, timeout: float = 1.0
    ) -> list[Any]: ...
    async def stats(self) -> dict[str, Any]: ...


class TopicsBus:
    """The core itself (subscribe is synchronous there)."""

    def __init__(self, maxsize: int) -> None:
        self.topics = Topics(maxsize)

    async def subscribe(self, topic: str, group: str, *, lossy: bool = False) -> None:
        self.topics.subscribe(topic, group, lossy=lossy)

    async def unsubscribe(self, topic: str, group: str) -> None:
        self.topics.unsubscribe(topic, group)

    async def publish(self, topic: str, messages: list[Any], timeout: float = 30.0) -> int:
        return await self.topics.publish(topic, messages, timeout)

    async def consume(
        self, topic: str, group: str, max_items: int = 100, timeout: float = 1.0
    ) -> list[Any]:
        return await self.topics.consume(topic, group, max_items, timeout)

    async def stats(self) -> dict[str, Any]:
        return dict(self.topics.stats())


class ActorBus:
    """A `Broker` actor on the session's Ray: every call is a remote call, awaited."""

    def __init__(self, maxsize: int) -> None:
        import ray

        from tg_actors.broker.actor import Broker

        queue_options = {"num_cpus": 0, "max_restarts": -1}  # runtime.py's, less the head
        self.handle: Any = (
            ray.remote(Broker)
            .options(num_cpus=0)
            .remote(maxsize, 30.0, queue_options=queue_options)
        )

    async def subscribe(self, topic: str, group: str, *, lossy: bool = False) -> None:
        await self.handle.subscribe.remote(topic, group, lossy=lossy)

    async def unsubscribe(self, topic: str, group: str) -> None:
        await self.handle.unsubscribe.remote(topic, group)

    async def publish(self, topic: str, messages: list[Any], timeout: float = 30.0) -> int:
        return int(await self.handle.publish.remote(topic, messages, timeout))

    async def consume(
        self, topic: str, group: str, max_items: int = 100, timeout: float = 1.0
    ) -> list[Any]:
        return list(await self.handle.consume.remote(topic, group, max_items, timeout))

    async def stats(self) -> dict[str, Any]:
        return dict(await self.handle.stats.remote())

    def close(self) -> None:
        import ray

        ray.kill(self.handle)
