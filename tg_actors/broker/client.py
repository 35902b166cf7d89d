"""Typed helpers around the broker actor handle, shared by every actor and the Serve app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tg_actors.errors import BrokerFull, CommandUnanswered
from tg_actors.messages import Command, Message

log = logging.getLogger(__name__)


class BrokerClient:
    def __init__(self, broker: Any) -> None:
        self.handle = broker

    async def subscribe(
        self, topic: str, group: str, *, shared: bool = False, lossy: bool = False
    ) -> Any:
        return await self.handle.subscribe.remote(topic, group, shared=shared, lossy=lossy)

    async def unsubscribe(self, topic: str, group: str) -> None:
        await self.handle.unsubscribe.remote(topic, group)

    async def publish(self, topic: str, *messages: Message, retry_for: float = 0.0) -> int:
        """Deliver to every group of `topic`; how many groups got it. With `retry_for`, a broker
        that is down (a restart takes a few seconds, and calls meanwhile fail at once) is
        waited out that long. Only for messages where a rare duplicate is harmless: a call
        that failed may still have been delivered before the broker died."""
        deadline = time.monotonic() + retry_for
        while True:
            try:
                return int(await self.handle.publish.remote(topic, list(messages)))
            except (BrokerFull, ValueError):
                raise  # the broker's own answer: full for its whole timeout, or a bad batch
            except Exception:  # the broker actor died or is restarting (Ray's errors)
                if time.monotonic() >= deadline:
                    raise
                log.warning("publish on %s: broker unavailable; retrying", topic)
                await asyncio.sleep(0.25)

    async def consume(
        self, topic: str, group: str, max_items: int = 100, timeout: float = 1.0
    ) -> list[Any]:
        return list(await self.handle.consume.remote(topic, group, max_items, timeout))

    async def request(self, topic: str, command: Command, timeout: float) -> Any:
        """Publish `command` and wait up to `timeout` s for its owner's answer, in one call to
        the broker. CommandUnanswered when no answer comes: nobody listens on `topic` yet,
        the owner stayed silent, or the broker is down or restarted meanwhile (the command
        may have been applied: sent again with the same id, it is applied once)."""
        cid, kind = command.command_id, command.kind
        try:
            outcome, answer = await self.handle.request.remote(topic, command, cid, timeout)
        except (BrokerFull, ValueError):
            raise
        except Exception as exc:  # Ray's: the broker died, is restarting, or restarted
            reason = f"the broker is down or restarted while it waited ({type(exc).__name__})"
            raise CommandUnanswered(cid, kind, reason) from None
        if outcome == "nobody":
            raise CommandUnanswered(cid, kind, "nothing reads commands yet (starting up?)")
        if outcome == "timeout":
            raise CommandUnanswered(cid, kind, f"its owner did not answer in {timeout:g}s")
        return answer

    async def reply(self, answers: list[tuple[str, Any]]) -> None:
        """Post answers to the reply mailbox, each under its key (a command id)."""
        await self.handle.reply.remote(answers)

    async def reply_all(self, replies: list[Any]) -> None:
        """Post command replies (`commands.reply.Reply`) under their command ids."""
        await self.reply([(reply.command_id, reply) for reply in replies])

    async def pump(
        self,
        topic: str,
        group: str,
        handler: Callable[[Any], Awaitable[None]],
        stop: asyncio.Event,
        lossy: bool = False,
    ) -> None:
        """Feed every message of `group` to `handler` until `stop`; a failing handler is logged
        and the loop keeps going (one bad message must not stall a subscriber)."""

        async def each(batch: list[Any]) -> None:
            for message in batch:
                try:
                    await handler(message)
                except Exception:
                    log.exception("handler for %s/%s failed on %r", topic, group, message)

        await self.pump_batches(topic, group, each, stop, lossy)

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
                # a restarted broker may have lost the group: join again, as what it was, as
                # soon as it answers (a consume would re-create the group, but never lossy)
                while not stop.is_set():
                    try:
                        await self.subscribe(topic, group, lossy=lossy)
                        break
                    except Exception:
                        await asyncio.sleep(0.25)  # still restarting
                await asyncio.sleep(0.1)  # no busy loop should consume keep failing
                continue
            if batch:
                try:
                    await handler(batch)
                except Exception:
                    log.exception("batch handler for %s/%s failed", topic, group)
