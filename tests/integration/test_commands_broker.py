"""A command through the real broker actor and its reply mailbox, with the real desk and the
real Database actor (tg.commands on a DuckDB file): the owner's apply is the only stand-in.
The broker restarted between the publish and the answer gives the caller a clear error,
and the command sent again with its id is answered without being applied twice."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import ray

from tests.kit.faults import pid_of, restarted
from tg_actors.broker.actor import Broker
from tg_actors.broker.client import BrokerClient
from tg_actors.commands.desk import SCHEDULER_KINDS, CommandDesk
from tg_actors.commands.reply import Reply
from tg_actors.errors import CommandUnanswered, JobNotFound
from tg_actors.messages import TOPIC_COMMANDS, TriggerJob
from tg_actors.peer import Peer, face
from tg_actors.store.actor import Database

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]
GROUP = "scheduler"


class Owner:
    """Counts what it applied; `gate`, when set up, holds an apply until it is set."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def apply(self, command: Any) -> Reply:
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if command.name == "missing":
            raise JobNotFound(command.name)
        self.applied.append(command.command_id)
        return Reply(command.command_id, f"run-{command.command_id}", outcome="run")


def trigger(cid: str, name: str = "orders") -> TriggerJob:
    return TriggerJob(name=name, command_id=cid, who="api")


async def group_back(broker: Any, groups: set[str]) -> None:
    for _ in range(200):
        try:
            stats = await broker.stats.remote()
            if groups <= set(stats.get(TOPIC_COMMANDS, {})):
                return
        except Exception:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError(f"groups {groups} not back on {TOPIC_COMMANDS}")


def test_broker_restarted_between_publish_and_answer(tmp_path: Path, namespace: str) -> None:
    name = f"broker_{uuid.uuid4().hex[:6]}"

    async def scenario() -> None:
        broker = (
            ray.remote(Broker)
            .options(name=name, namespace=namespace, num_cpus=0, max_restarts=-1)
            .remote(1000, 30.0)
        )
        db = (
            ray.remote(Database)
            .options(num_cpus=0)
            .remote(str(tmp_path / "w.duckdb"), Peer(name, namespace))
        )
        await db.start.remote()
        client = BrokerClient(broker)
        owner = Owner()
        desk = CommandDesk(SCHEDULER_KINDS, owner.apply, face(db), client.reply_all)
        stop = asyncio.Event()
        pump = asyncio.create_task(client.pump_batches(TOPIC_COMMANDS, GROUP, desk.on_batch, stop))
        try:
            await group_back(broker, {GROUP, "database"})
            # answered through the mailbox: a value, and a refusal as the error itself
            assert (await client.request(TOPIC_COMMANDS, trigger("k0"), 10)).result() == "run-k0"
            refusal = await client.request(TOPIC_COMMANDS, trigger("k9", "missing"), 10)
            with pytest.raises(JobNotFound):
                refusal.result()

            # the broker dies while the owner applies k1: published, not yet answered
            owner.gate = asyncio.Event()
            owner.started.clear()
            waiting = asyncio.create_task(client.request(TOPIC_COMMANDS, trigger("k1"), 30))
            await asyncio.wait_for(owner.started.wait(), 10)
            old = pid_of(broker)
            assert old is not None
            ray.kill(broker, no_restart=False)
            await asyncio.to_thread(restarted, broker, old)
            owner.gate.set()
            with pytest.raises(CommandUnanswered, match="Idempotency-Key: k1") as caught:
                await waiting
            assert "broker is down or restarted" in str(caught.value)

            # sent again with its id once the desk has joined the new broker: the answer of
            # the first application, not a second one
            await group_back(broker, {GROUP})
            again = await client.request(TOPIC_COMMANDS, trigger("k1"), 10)
            assert again.result() == "run-k1"
            assert owner.applied == ["k0", "k1"]

            rows = {r["command_id"]: r for r in await db.list_commands.remote()}
            assert set(rows) == {"k0", "k1", "k9"}
            assert {r["who"] for r in rows.values()} == {"api"}
            assert rows["k1"]["outcome"] == "run" and rows["k1"]["answered_at"] is not None
            assert rows["k9"]["outcome"].startswith("refused: JobNotFound")

            # nobody listening: told at once, not after the wait
            with pytest.raises(CommandUnanswered, match="nothing reads commands"):
                await client.request("nobody-listens", trigger("k2"), 10)
            # the broker gone for good: a clear error, at once
            ray.kill(broker, no_restart=True)
            with pytest.raises(CommandUnanswered, match="broker is down"):
                await asyncio.wait_for(client.request(TOPIC_COMMANDS, trigger("k3"), 10), 20)
            assert owner.applied == ["k0", "k1"]
        finally:
            stop.set()
            pump.cancel()
            await db.close.remote()
            ray.kill(db)

    asyncio.run(scenario())
