"""Broker actor: topics with consumer groups (broker.topics) plus shared work queues.

A group may be *shared*: it is then backed by a `ray.util.queue.Queue` that its members (the
engines) read directly, so competing consumers do not go through this actor at all; the broker
forwards each published batch into it, waiting while it is full (back-pressure).
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ray
from ray.util.queue import Full, Queue

from tg_actors import interfaces
from tg_actors.broker.mailbox import Mailbox
from tg_actors.broker.topics import Topics
from tg_actors.errors import BrokerFull


def _restarted() -> bool:
    """Whether this actor process is a restart (Ray re-ran __init__ after a crash)."""
    try:
        with warnings.catch_warnings():  # Ray's own property reads its deprecated actor_id
            warnings.simplefilter("ignore", DeprecationWarning)
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:  # not in an actor (plain tests)
        return False


class Broker:
    def __init__(
        self,
        maxsize: int = 10_000,
        publish_timeout: float = 30.0,
        groups: Sequence[tuple[str, str, bool, bool]] = (),
        queue_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`queue_options`: the Ray options of each shared group's queue actor, decided by
        runtime.py (None: Ray's defaults)."""
        self._topics = Topics(maxsize)
        self._mailbox = Mailbox()
        self._queue_options = dict(queue_options or {})
        self._shared: dict[str, dict[str, Queue]] = {}
        self._maxsize = maxsize
        self._timeout = publish_timeout
        if groups and _restarted():
            # a restarted broker starts empty, and a message published to a group that does
            # not exist is lost: re-create the system's own groups (topic, group, shared,
            # lossy), the work queue too, before any publish lands; their members join again
            for topic, group, shared, lossy in groups:
                self._join(topic, group, shared=shared, lossy=lossy)

    async def subscribe(
        self,
        topic: str,
        group: str,
        *,
        shared: bool = False,
        maxsize: int | None = None,
        lossy: bool = False,
    ) -> Queue | None:
        """Join `group` on `topic`. A shared group returns the Ray queue its members read; a
        lossy one drops its oldest messages when full instead of holding publishers back."""
        return self._join(topic, group, shared=shared, maxsize=maxsize, lossy=lossy)

    async def unsubscribe(self, topic: str, group: str) -> None:
        """Drop a group whose member is gone for good (a removed engine): nothing more piles
        up for it."""
        self._topics.unsubscribe(topic, group)

    def _join(
        self,
        topic: str,
        group: str,
        *,
        shared: bool = False,
        maxsize: int | None = None,
        lossy: bool = False,
    ) -> Queue | None:
        if not shared:
            self._topics.subscribe(topic, group, maxsize, lossy)
            return None
        queues = self._shared.setdefault(topic, {})
        if group not in queues:
            queues[group] = Queue(
                maxsize=maxsize or self._maxsize,
                actor_options=self._queue_options,
            )
        return queues[group]

    async def publish(self, topic: str, messages: list[Any], timeout: float | None = None) -> int:
        """Deliver to every group of `topic`; returns how many groups got the batch."""
        limit = self._timeout if timeout is None else timeout
        count = await self._topics.publish(topic, messages, limit)
        for group, queue in self._shared.get(topic, {}).items():
            await self._put_shared(topic, group, queue, messages, limit)
            count += 1
        return count

    async def consume(
        self, topic: str, group: str, max_items: int = 100, timeout: float = 1.0
    ) -> list[Any]:
        return await self._topics.consume(topic, group, max_items, timeout)

    async def request(self, topic: str, message: Any, key: str, timeout: float) -> tuple[str, Any]:
        """Publish `message` and wait up to `timeout` for the answer posted under `key`:
        ("answered", answer), ("nobody", None) when no group has subscribed to `topic`, or
        ("timeout", None). One call for the caller: publish and wait happen here."""
        future = self._mailbox.open(key)  # before the publish: no answer can come first
        try:
            if not await self.publish(topic, [message], timeout):
                return "nobody", None
            return "answered", await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return "timeout", None
        finally:
            self._mailbox.close(key, future)

    async def reply(self, answers: list[tuple[str, Any]]) -> int:
        """Post each (key, answer) to whoever waits on the key; how many waiters got one."""
        return sum(self._mailbox.post(key, answer) for key, answer in answers)

    async def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = self._topics.stats()
        for topic, queues in self._shared.items():
            for group, queue in queues.items():
                actor: Any = queue.actor
                depth = await actor.qsize.remote()
                out.setdefault(topic, {})[group] = {"depth": depth, "shared": True}
        return out

    async def ping(self) -> str:
        return "ok"

    @staticmethod
    async def _put_shared(
        topic: str, group: str, queue: Queue, messages: list[Any], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        try:  # the common case: one call for the whole batch
            actor: Any = queue.actor
            await actor.put_nowait_batch.remote(messages)
            return
        except Full:
            pass
        for message in messages:  # full: item by item, waiting for room (back-pressure)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerFull(topic, group, timeout)
            try:
                await queue.put_async(message, timeout=remaining)
            except Full:
                raise BrokerFull(topic, group, timeout) from None
            await asyncio.sleep(0)


if TYPE_CHECKING:  # the actor keeps the promises of its face: mypy checks this conversion

    def _keeps_its_face(actor: Broker) -> interfaces.Broker:
        return actor
