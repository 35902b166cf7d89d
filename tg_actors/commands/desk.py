"""Where an actor takes the commands it owns off the `commands` topic: each applied once per
command id, its answer recorded in `tg.commands` and sent to the broker's reply mailbox.

Every owner's group gets every command (fan-out); a desk keeps those of its `kinds`. For a
batch it reads which ids already have a final answer (one query: a command sent again after
a lost answer, or read again after a restart; not for an id the API made for the command),
applies the others once each (duplicates in
the batch wait for the first), records the answers (one write) and replies to every copy:
the record first, unless every command applied came from the API with an id it made.
A command sent again is therefore answered, not applied again, as long as its first answer
was recorded or the desk still remembers it (the last REMEMBERED ids, for a Database that is
down). Commands that may run side by side (triggers: they share one insert) are applied
together; the others in the order they came.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from tg_actors import interfaces
from tg_actors.commands.reply import Answered, Received, Reply, from_json, refused, to_json
from tg_actors.errors import IdempotencyKeyReused
from tg_actors.messages import Command

log = logging.getLogger(__name__)
REMEMBERED = 10_000
RECORD_LINGER_S = 0.25  # how long the records of answers already sent wait to go together

# the owner of each command kind; every kind has one
CONFIG_KINDS = frozenset({"upsert", "delete", "pause", "resume"})
SCHEDULER_KINDS = frozenset({"trigger", "cancel"})
POOL_KINDS = frozenset({"scale"})

Apply = Callable[[Any], Awaitable[Reply]]


def fingerprint(command: Command) -> str:
    """What a command asks for, whoever sent it when: the same id sent again with another
    request (another job, another body) is refused, not answered with the first's answer."""
    fields = command.model_dump(mode="json", exclude={"ts", "command_id", "who", "minted"})
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


SendReplies = Callable[[list[Reply]], Awaitable[None]]


class CommandDesk:
    def __init__(
        self,
        kinds: frozenset[str],
        apply: Apply,
        db: interfaces.Database,
        send: SendReplies,
        *,
        together: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        linger: float = RECORD_LINGER_S,
    ) -> None:
        self._kinds = kinds
        self._apply = apply
        self._db = db
        self._send = send
        self._together = together
        self._now = clock
        self._answers: OrderedDict[str, Reply] = OrderedDict()  # recent ones, newest last
        self.applied = 0  # commands applied (not answered from a record)
        self._linger = linger
        self._later: list[Answered] = []  # records of answers sent, to be written together
        self._flusher: asyncio.Task[None] | None = None

    async def on_batch(self, batch: Sequence[Any]) -> None:
        mine = [m for m in batch if isinstance(m, Command) and m.kind in self._kinds]
        if not mine:
            return
        answered = {
            m.command_id: self._answers[m.command_id] for m in mine if m.command_id in self._answers
        }
        fresh: dict[str, Command] = {}
        for m in mine:  # the first copy of an id is the one applied
            if m.command_id not in answered:
                fresh.setdefault(m.command_id, m)
        sent_before = [cid for cid, m in fresh.items() if not m.minted]
        if sent_before:
            answered |= await self._recall(sent_before)
        todo = [m for command_id, m in fresh.items() if command_id not in answered]
        replies = await self._run(todo) if todo else []
        self.applied += len(todo)
        for command, reply in zip(todo, replies, strict=True):
            answered[reply.command_id] = dataclasses.replace(
                reply, fingerprint=fingerprint(command)
            )
        replies = [answered[m.command_id] for m in todo]
        for reply in answered.values():
            self._remember(reply)
        # a command sent again is looked up in the record: write it before the answer. Ids
        # the API made are sent again only after a 503, once the broker is back (seconds),
        # so their answer goes first and their record follows within RECORD_LINGER_S, many
        # in one write (the Database's thread is what a burst of commands waits on); not the
        # UI's: its History is read right after its command
        if todo and not all(m.minted and m.who == "api" for m in todo):
            await self._record(self._answers_of(todo, replies))
            todo = []
        await self._answer([self._for(m, answered[m.command_id]) for m in mine])
        if todo:
            self._later += self._answers_of(todo, replies)
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush_later())

    @staticmethod
    def _for(command: Command, reply: Reply) -> Reply:
        """`reply` as the answer to `command`, unless its id answered another request."""
        if reply.fingerprint and reply.fingerprint != fingerprint(command):
            error = IdempotencyKeyReused(command.command_id, command.kind, command.job)
            return refused(command.command_id, error, command.job)
        return reply

    async def flush(self) -> None:
        """Write the records still lingering (a stop, a test)."""
        if self._flusher is not None:
            await self._flusher

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._linger)
        answers, self._later = self._later, []
        await self._record(answers)

    async def _answer(self, replies: list[Reply]) -> None:
        try:
            await self._send(replies)
        except Exception:  # the callers' waits end in CommandUnanswered; the answer is kept
            log.warning("answers to %d command(s) not sent", len(replies), exc_info=True)

    async def _recall(self, command_ids: list[str]) -> dict[str, Reply]:
        try:
            kept = await self._db.command_replies(command_ids)
        except Exception:  # applied anyway: the record may be missing, not the command
            log.warning("answers of commands not read; applying them", exc_info=True)
            return {}
        return {command_id: from_json(command_id, text) for command_id, text in kept.items()}

    async def _run(self, commands: list[Command]) -> list[Reply]:
        if self._together:
            return list(await asyncio.gather(*(self._one(c) for c in commands)))
        return [await self._one(c) for c in commands]

    async def _one(self, command: Command) -> Reply:
        try:
            return await self._apply(command)
        except Exception as exc:  # the answer, not a crash of the desk
            return refused(command.command_id, exc, command.job)

    def _answers_of(self, commands: list[Command], replies: list[Reply]) -> list[Answered]:
        now = self._now()
        return [
            Answered(
                Received(c.command_id, c.kind, r.job or c.job, c.who, c.ts),
                answered_at=now,
                outcome=r.outcome,
                reply=to_json(r) if r.final else None,
            )
            for c, r in zip(commands, replies, strict=True)
        ]

    async def _record(self, answers: list[Answered]) -> None:
        try:
            await self._db.commands_answered(answers)
        except Exception:  # the desk remembers them; the audit log misses the outcome
            log.warning("outcomes of %d command(s) not recorded", len(answers), exc_info=True)

    def _remember(self, reply: Reply) -> None:
        if not reply.final:  # sent again, it is tried again
            return
        self._answers[reply.command_id] = reply
        self._answers.move_to_end(reply.command_id)
        while len(self._answers) > REMEMBERED:
            self._answers.popitem(last=False)
