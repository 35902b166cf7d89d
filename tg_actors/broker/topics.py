"""Topics with consumer groups, in one asyncio event loop (the broker actor's).

Every group of a topic gets every message published after it subscribed (fan-out); the
members of one group compete for its messages (each message to one member). Each group is
bounded: a publish waits until every group has room for the whole batch, so a slow group
pushes back on publishers, and a batch is delivered to all groups or (on timeout) to none.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tg_actors.errors import BrokerFull


@dataclass
class GroupBuffer:
    maxsize: int
    items: deque[Any] = field(default_factory=deque)
    delivered: int = 0
    # lossy: a full group drops its oldest messages instead of holding publishers back (live
    # views such as the API's event stream, which must never stall the system)
    lossy: bool = False
    dropped: int = 0

    def extend(self, messages: list[Any]) -> None:
        self.items.extend(messages)
        while self.lossy and len(self.items) > self.maxsize:
            self.items.popleft()
            self.dropped += 1

    @property
    def free(self) -> int:
        return self.maxsize - len(self.items)


class Topics:
    """The in-process broker core; the Ray actor in `broker/actor.py` is a thin shell around it."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self._maxsize = maxsize
        self._groups: dict[str, dict[str, GroupBuffer]] = {}
        self._changed = asyncio.Condition()
        self.published = 0

    def subscribe(
        self, topic: str, group: str, maxsize: int | None = None, lossy: bool = False
    ) -> None:
        """Create the group if new (idempotent: members of a group call it too)."""
        groups = self._groups.setdefault(topic, {})
        if group not in groups:
            groups[group] = GroupBuffer(maxsize or self._maxsize, lossy=lossy)

    def unsubscribe(self, topic: str, group: str) -> None:
        self._groups.get(topic, {}).pop(group, None)

    def groups(self, topic: str) -> list[str]:
        return sorted(self._groups.get(topic, {}))

    async def publish(self, topic: str, messages: list[Any], timeout: float = 30.0) -> int:
        """Append to every group of `topic`; wait (up to timeout) for room. Returns group count."""
        if not messages:
            return 0
        groups = self._groups.get(topic, {})
        too_big = [g for g, buf in groups.items() if len(messages) > buf.maxsize and not buf.lossy]
        if too_big:
            raise ValueError(f"batch of {len(messages)} exceeds the bound of group {too_big[0]!r}")

        def has_room() -> bool:
            return all(
                buf.lossy or buf.free >= len(messages)
                for buf in self._groups.get(topic, {}).values()
            )

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(has_room), timeout)
            except TimeoutError:
                full = next(g for g, b in groups.items() if b.free < len(messages))
                raise BrokerFull(topic, full, timeout) from None
            current = self._groups.get(topic, {})
            for buf in current.values():
                buf.extend(messages)
            self.published += len(messages)
            self._changed.notify_all()
            return len(current)

    async def consume(
        self, topic: str, group: str, max_items: int = 100, timeout: float = 1.0
    ) -> list[Any]:
        """Up to max_items messages; waits up to `timeout` for the first. [] on timeout."""
        self.subscribe(topic, group)
        buf = self._groups[topic][group]
        async with self._changed:
            if not buf.items and timeout > 0:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: bool(buf.items)), timeout)
                except TimeoutError:
                    return []
            count = min(max_items, len(buf.items))
            out = [buf.items.popleft() for _ in range(count)]
            buf.delivered += count
            if out:
                self._changed.notify_all()  # wake publishers waiting for room
            return out

    def stats(self) -> dict[str, dict[str, dict[str, int]]]:
        return {
            topic: {
                g: {
                    "depth": len(b.items),
                    "delivered": b.delivered,
                    "maxsize": b.maxsize,
                    "dropped": b.dropped,
                }
                for g, b in groups.items()
            }
            for topic, groups in self._groups.items()
        }
