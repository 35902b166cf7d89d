"""What only the broker actor has: shared groups, backed by a Ray queue the engines read
directly (competing consumers, back-pressure). The contract it shares with the in-process
core (fan-out, groups, back-pressure, lossy groups) is test_broker_contract.py, run on both."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import ray

from tg_actors.broker.actor import Broker
from tg_actors.errors import BrokerFull

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


@ray.remote(num_cpus=0)
class SlowWorker:
    """Takes items from a shared queue one at a time, like an engine."""

    async def drain(self, queue: Any, idle: float = 1.0) -> list[int]:
        from ray.util.queue import Empty

        got: list[int] = []
        while True:
            try:
                got.append(await queue.get_async(timeout=idle))
            except Empty:
                return got
            await asyncio.sleep(0.005)  # the work


def new_broker(maxsize: int = 1000) -> Any:
    queue_options = {"num_cpus": 0, "max_restarts": -1}  # runtime.py's, less the head resource
    return ray.remote(Broker).options(num_cpus=0).remote(maxsize, 30.0, queue_options=queue_options)


def test_engines_compete_on_a_shared_ray_queue() -> None:
    broker = new_broker()
    queue = ray.get(broker.subscribe.remote("triggers", "engines", shared=True))
    # a second member of the group gets the same queue
    assert ray.get(broker.subscribe.remote("triggers", "engines", shared=True)).actor == queue.actor
    workers = [SlowWorker.remote() for _ in range(2)]
    pending = [w.drain.remote(queue) for w in workers]
    for start in range(0, 200, 50):
        ray.get(broker.publish.remote("triggers", list(range(start, start + 50))))
    first, second = ray.get(pending)
    assert sorted(first + second) == list(range(200))  # each message to exactly one worker
    assert first and second  # and both workers took part


def test_full_shared_queue_pushes_back() -> None:
    broker = new_broker(maxsize=3)
    queue = ray.get(broker.subscribe.remote("work", "engines", shared=True))
    ray.get(broker.publish.remote("work", [1, 2, 3]))
    with pytest.raises(BrokerFull):
        ray.get(broker.publish.remote("work", [4], 0.3))
    waiting = broker.publish.remote("work", [4], 10.0)
    assert queue.get(timeout=5) == 1
    assert ray.get(waiting, timeout=5) == 1
    assert [queue.get(timeout=5) for _ in range(3)] == [2, 3, 4]


@pytest.mark.parametrize("shared", [True, False], ids=["shared queue", "plain group"])
async def test_both_shapes_of_an_engines_work_hand_out_the_same_runs(shared: bool) -> None:
    """engine/work.py: a lone engine's plain group takes what the shared queue would, in
    order and up to its free slots, and waits no longer than WAIT_S when there is none."""
    from tg_actors.broker.client import BrokerClient
    from tg_actors.engine.work import WAIT_S, work_for
    from tg_actors.messages import TOPIC_TRIGGERS, TriggerRun

    client = BrokerClient(new_broker())
    work = work_for(client, shared)
    await work.join()
    runs = [TriggerRun(run_id=f"r{i}", job="j", spec={}) for i in range(3)]
    assert await client.publish(TOPIC_TRIGGERS, *runs) == 1
    first = await work.take(2)
    await asyncio.sleep(0.05)
    rest = await work.take(5)
    began = time.monotonic()
    none = await work.take(5)
    waited = time.monotonic() - began
    assert [m.run_id for m in first] == ["r0", "r1"]
    assert [m.run_id for m in rest] == ["r2"]
    assert none == [] and WAIT_S * 0.8 <= waited < WAIT_S + 2.0
