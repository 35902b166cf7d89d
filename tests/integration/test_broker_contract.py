"""The broker's contract, run over both implementations: the pure `Topics` core in-process and
the Ray `Broker` actor (tests/kit/buses.py). Fan-out between groups, competition within one,
back-pressure all-or-nothing, lossy groups, stats. What only the actor has (shared Ray queues
for the engines) is in test_broker_actor.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from tests.kit.buses import ActorBus, Bus, TopicsBus
from tg_actors.errors import BrokerFull

NewBus = Callable[[int], Bus]


@pytest.fixture(
    params=["topics", pytest.param("actor", marks=pytest.mark.ray)],
)
def new_bus(request: pytest.FixtureRequest) -> Iterator[NewBus]:
    """new_bus(maxsize): a fresh, empty broker of the parametrized kind."""
    made: list[ActorBus] = []
    if request.param == "topics":
        yield TopicsBus
        return
    request.getfixturevalue("ray_session")

    def actor(maxsize: int) -> Bus:
        bus = ActorBus(maxsize)
        made.append(bus)
        return bus

    yield actor
    for bus in made:
        bus.close()


async def until_blocked(task: asyncio.Task[int]) -> None:
    """Give a publish the time to land if it could (a remote round trip is well under this)."""
    await asyncio.sleep(0.3)
    assert not task.done()


async def test_fan_out_each_group_gets_every_message_in_order(new_bus: NewBus) -> None:
    bus = new_bus(1000)
    for group in ("ui", "database", "scheduler"):
        await bus.subscribe("status", group)
    assert await bus.publish("status", list(range(250))) == 3
    for group in ("ui", "database", "scheduler"):
        got: list[int] = []
        while len(got) < 250:
            got += await bus.consume("status", group, 100, 1.0)
        assert got == list(range(250))


async def test_members_of_a_group_compete_and_split_in_order(new_bus: NewBus) -> None:
    bus = new_bus(1000)
    await bus.subscribe("t", "g")
    await bus.publish("t", list(range(100)))
    first = await bus.consume("t", "g", 30, 0)
    second = await bus.consume("t", "g", 100, 0)
    assert first == list(range(30)) and second == list(range(30, 100))


async def test_late_subscriber_gets_only_new_messages(new_bus: NewBus) -> None:
    bus = new_bus(1000)
    await bus.subscribe("t", "a")
    await bus.publish("t", ["old"])
    await bus.subscribe("t", "b")
    await bus.publish("t", ["new"])
    assert await bus.consume("t", "b", 10, 0) == ["new"]
    assert await bus.consume("t", "a", 10, 0) == ["old", "new"]


async def test_consume_waits_for_a_message_and_times_out_empty(new_bus: NewBus) -> None:
    bus = new_bus(1000)
    await bus.subscribe("t", "g")
    assert await bus.consume("t", "g", 10, 0.05) == []
    waiter = asyncio.create_task(bus.consume("t", "g", 10, 10))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    await bus.publish("t", ["x"])
    assert await asyncio.wait_for(waiter, 5) == ["x"]


async def test_a_full_group_holds_the_publisher_back_until_it_is_consumed(
    new_bus: NewBus,
) -> None:
    bus = new_bus(3)
    await bus.subscribe("t", "slow")
    await bus.subscribe("t", "fast")
    await bus.publish("t", [1, 2, 3])
    blocked = asyncio.create_task(bus.publish("t", [4], timeout=10))
    await until_blocked(blocked)  # both groups must have room: the publisher waits
    await bus.consume("t", "fast", 10, 0)
    await until_blocked(blocked)  # "slow" is still full
    assert await bus.consume("t", "slow", 1, 0) == [1]
    assert await asyncio.wait_for(blocked, 5) == 2
    assert await bus.consume("t", "slow", 10, 0) == [2, 3, 4]
    assert await bus.consume("t", "fast", 10, 0) == [4]


async def test_a_full_group_times_out_with_broker_full_and_delivers_nothing(
    new_bus: NewBus,
) -> None:
    bus = new_bus(2)
    await bus.subscribe("t", "a")
    await bus.subscribe("t", "b")
    await bus.publish("t", [1, 2])
    await bus.consume("t", "a", 10, 0)
    began = time.monotonic()
    with pytest.raises(BrokerFull, match="'b'"):
        await bus.publish("t", [3], timeout=0.2)
    assert time.monotonic() - began >= 0.2  # it waited for room before giving up
    assert await bus.consume("t", "a", 10, 0) == []  # all-or-nothing per batch
    assert await bus.consume("t", "b", 10, 0) == [1, 2]


async def test_a_batch_larger_than_a_group_bound_is_refused(new_bus: NewBus) -> None:
    bus = new_bus(2)
    await bus.subscribe("t", "a")
    with pytest.raises(ValueError, match="exceeds"):
        await bus.publish("t", [1, 2, 3])
    assert await bus.consume("t", "a", 10, 0) == []


async def test_stats_count_depth_and_deliveries(new_bus: NewBus) -> None:
    bus = new_bus(5)
    await bus.subscribe("t", "a")
    await bus.publish("t", [1, 2])
    await bus.consume("t", "a", 1, 0)
    assert await bus.stats() == {
        "t": {"a": {"depth": 1, "delivered": 1, "maxsize": 5, "dropped": 0}}
    }


async def test_a_lossy_group_drops_its_oldest_and_never_holds_publishers_back(
    new_bus: NewBus,
) -> None:
    bus = new_bus(3)
    await bus.subscribe("status", "live", lossy=True)
    await bus.subscribe("status", "db")
    assert await bus.publish("status", [1, 2], timeout=0.1) == 2
    await bus.consume("status", "db", 10, 0)  # db keeps up; live does not
    assert await bus.publish("status", [3, 4], timeout=0.1) == 2  # no BrokerFull
    assert await bus.consume("status", "live", 10, 0) == [2, 3, 4]
    assert (await bus.stats())["status"]["live"]["dropped"] == 1
    assert await bus.consume("status", "db", 10, 0) == [3, 4]


async def test_an_unsubscribed_group_gets_nothing_more_and_holds_no_one_back(
    new_bus: NewBus,
) -> None:
    bus = new_bus(2)
    await bus.subscribe("t", "gone")
    await bus.subscribe("t", "here")
    await bus.publish("t", [1, 2])
    await bus.unsubscribe("t", "gone")  # full, but no longer a reason to wait
    await bus.consume("t", "here", 10, 0)
    assert await bus.publish("t", [3], timeout=0.2) == 1
    assert await bus.consume("t", "here", 10, 0) == [3]
    assert "gone" not in (await bus.stats())["t"]
