"""TtlCache: shared answers within the ttl, one computation for concurrent misses, cleared
by writes."""

from __future__ import annotations

import asyncio

import pytest

from serve.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_answers_are_shared_within_the_ttl_and_recomputed_after() -> None:
    clock, calls = Clock(), []

    async def compute() -> bytes:
        calls.append(1)
        return f"v{len(calls)}".encode()

    cache = TtlCache(1.0, clock)
    assert await cache.get("k", compute) == b"v1"
    clock.now = 0.9
    assert await cache.get("k", compute) == b"v1"
    clock.now = 1.1
    assert await cache.get("k", compute) == b"v2"
    cache.clear()
    assert await cache.get("k", compute) == b"v3"
    assert await cache.get("other", compute) == b"v4"


async def test_concurrent_misses_share_one_computation() -> None:
    calls = 0

    async def slow() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return b"x"

    cache = TtlCache(1.0)
    assert await asyncio.gather(*(cache.get("k", slow) for _ in range(50))) == [b"x"] * 50
    assert calls == 1 and cache.misses == 1 and cache.hits == 49


async def test_errors_are_not_cached_and_reach_every_waiter() -> None:
    attempts = 0

    async def failing() -> bytes:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        raise ConnectionError("db gone")

    cache = TtlCache(1.0)
    results = await asyncio.gather(
        *(cache.get("k", failing) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results) and attempts == 1
    with pytest.raises(ConnectionError):
        await cache.get("k", failing)
    assert attempts == 2


async def test_a_write_during_a_computation_keeps_its_stale_answer_out() -> None:
    cache = TtlCache(10.0)
    release = asyncio.Event()

    async def old() -> bytes:
        await release.wait()
        return b"old"

    task = asyncio.create_task(cache.get("k", old))
    await asyncio.sleep(0)
    cache.clear()  # a PUT landed meanwhile
    release.set()
    assert await task == b"old"

    async def new() -> bytes:
        return b"new"

    assert await cache.get("k", new) == b"new"


async def test_ttl_zero_disables() -> None:
    cache = TtlCache(0)
    n = 0

    async def compute() -> bytes:
        nonlocal n
        n += 1
        return b"v"

    await cache.get("k", compute)
    await cache.get("k", compute)
    assert n == 2
