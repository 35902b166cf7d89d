"""Typed helpers around the broker actor handle, shared by every actor and the Serve app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tg_actors.messages import Message

log = logging.getLogger(__name__)


class BrokerClient:
    def __init__(self, broker: Any) -> None:
        self.handle = broker

    async def subscribe(
        self, topic: str, group: str, *, shared: bool = False, lossy: bool = False
    ) -> Any:
        return await self.handle.subscribe.remote(topic, group, shared=shared, lossy=lossy)

    async def publish(self, topic: str, *messages: Message) -> int:
        return int(await self.handle.publish.remote(topic, list(messages)))

    async def consume(
        self, topic: str, group: str, max_items: int = 100, timeout: float = 1.0
    ) -> list[Any]:
        return list(await self.handle.consume.remote(topic, group, max_items, timeout))

    async def pump(
        self,
        topic: str,
        group: str,
        handler: Callable[[Any], Awaitable[None]],
        stop: asyncio.Event,
    ) -> None:
        """Feed every message of `group` to `handler` until `stop`; a failing handler is logged
        and the loop keeps going (one bad message must not stall a subscriber)."""

        async def each(batch: list[Any]) -> None:
            for message in batch:
                try:
                    await handler(message)
                except Exception:
                    log.exception("handler for %s/%s failed on %r", topic, group, message)

        await self.pump_batches(topic, group, each, stop)

    async def pump_batches(
        self,
        topic: str,
        group: str,
        handler: Callable[[list[Any]], Awaitable[None]],
        stop: asyncio.Event,
        lossy: bool = False,
    ) -> None:
        """Feed each consumed batch of `group` to `handler` (one write for many messages) until
        `stop`; a broker restarting is waited out, a failing handler is logged."""
        await self.subscribe(topic, group, lossy=lossy)
        while not stop.is_set():
            try:
                batch = await self.consume(topic, group, 500, 0.5)
            except Exception:
                if stop.is_set():
                    return
                log.warning("consume %s/%s failed; retrying", topic, group, exc_info=True)
                await asyncio.sleep(0.5)
                try:  # a restarted broker lost the group: join again, as what it was
                    await self.subscribe(topic, group, lossy=lossy)
                except Exception:
                    pass
                continue
            if batch:
                try:
                    await handler(batch)
                except Exception:
                    log.exception("batch handler for %s/%s failed", topic, group)
