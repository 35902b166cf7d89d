"""The broker core in-process: fan-out, competition, back-pressure (the actor suite reuses it)."""

from __future__ import annotations

import asyncio

import pytest

from tg_actors.broker.topics import Topics
from tg_actors.errors import BrokerFull


async def test_fan_out_between_groups() -> None:
    topics = Topics()
    topics.subscribe("status", "ui")
    topics.subscribe("status", "db")
    assert await topics.publish("status", [1, 2, 3]) == 2
    assert await topics.consume("status", "ui", 10, 0) == [1, 2, 3]
    assert await topics.consume("status", "db", 10, 0) == [1, 2, 3]


async def test_competing_consumers_within_a_group_split_messages() -> None:
    topics = Topics()
    topics.subscribe("t", "g")
    await topics.publish("t", list(range(100)))
    first = await topics.consume("t", "g", 30, 0)
    second = await topics.consume("t", "g", 100, 0)
    assert first == list(range(30)) and second == list(range(30, 100))


async def test_late_subscriber_gets_only_new_messages() -> None:
    topics = Topics()
    topics.subscribe("t", "a")
    await topics.publish("t", ["old"])
    topics.subscribe("t", "b")
    await topics.publish("t", ["new"])
    assert await topics.consume("t", "b", 10, 0) == ["new"]


async def test_consume_waits_for_a_message_and_times_out_empty() -> None:
    topics = Topics()
    topics.subscribe("t", "g")
    assert await topics.consume("t", "g", 10, 0.05) == []
    waiter = asyncio.create_task(topics.consume("t", "g", 10, 5))
    await asyncio.sleep(0.01)
    await topics.publish("t", ["x"])
    assert await asyncio.wait_for(waiter, 1) == ["x"]


async def test_full_group_pushes_back_until_consumed() -> None:
    topics = Topics(maxsize=3)
    topics.subscribe("t", "slow")
    topics.subscribe("t", "fast")
    await topics.publish("t", [1, 2, 3])
    blocked = asyncio.create_task(topics.publish("t", [4], timeout=5))
    await asyncio.sleep(0.05)
    assert not blocked.done()  # both groups must have room: the publisher waits
    await topics.consume("t", "fast", 10, 0)
    await asyncio.sleep(0.05)
    assert not blocked.done()  # "slow" is still full
    assert await topics.consume("t", "slow", 1, 0) == [1]
    assert await asyncio.wait_for(blocked, 1) == 2
    assert await topics.consume("t", "slow", 10, 0) == [2, 3, 4]


async def test_full_group_times_out_with_broker_full_and_delivers_nothing() -> None:
    topics = Topics(maxsize=2)
    topics.subscribe("t", "a")
    topics.subscribe("t", "b")
    await topics.publish("t", [1, 2])
    await topics.consume("t", "a", 10, 0)
    with pytest.raises(BrokerFull, match="'b'"):
        await topics.publish("t", [3], timeout=0.05)
    assert await topics.consume("t", "a", 10, 0) == []  # all-or-nothing per batch


async def test_batch_larger_than_bound_is_refused() -> None:
    topics = Topics(maxsize=2)
    topics.subscribe("t", "a")
    with pytest.raises(ValueError, match="exceeds"):
        await topics.publish("t", [1, 2, 3])


async def test_stats() -> None:
    topics = Topics(maxsize=5)
    topics.subscribe("t", "a")
    await topics.publish("t", [1, 2])
    await topics.consume("t", "a", 1, 0)
    assert topics.stats() == {"t": {"a": {"depth": 1, "delivered": 1, "maxsize": 5, "dropped": 0}}}


async def test_a_lossy_group_drops_its_oldest_and_never_holds_publishers_back() -> None:
    topics = Topics(maxsize=3)
    topics.subscribe("status", "live", lossy=True)
    topics.subscribe("status", "db")
    assert await topics.publish("status", [1, 2], timeout=0.1) == 2
    await topics.consume("status", "db", 10, 0)  # db keeps up; live does not
    assert await topics.publish("status", [3, 4], timeout=0.1) == 2  # no BrokerFull
    assert await topics.consume("status", "live", 10, 0) == [2, 3, 4]
    assert topics.stats()["status"]["live"]["dropped"] == 1
    assert await topics.consume("status", "db", 10, 0) == [3, 4]
