"""Coalescer: concurrent calls share batched calls; results and errors reach their callers."""

from __future__ import annotations

import asyncio

import pytest

from tg_actors.coalesce import Coalescer


class Recorder:
    def __init__(self, delay: float = 0.01) -> None:
        self.calls: list[list[int]] = []
        self.delay = delay

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.calls.append(list(items))
        await asyncio.sleep(self.delay)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_concurrent_callers_share_batches_in_order() -> None:
    rec = Recorder()
    c: Coalescer[int, int] = Coalescer(rec)
    results = await asyncio.gather(*(c.submit(i) for i in range(0, 200, 2)))
    assert results == [i * 10 for i in range(0, 200, 2)]
    assert [i for call in rec.calls for i in call] == list(range(0, 200, 2))
    assert len(rec.calls) == 1 and c.batches == 1


async def test_calls_during_a_batch_form_the_next_batch() -> None:
    rec = Recorder(delay=0.05)
    c: Coalescer[int, int] = Coalescer(rec)
    first = asyncio.create_task(c.submit(0))
    await asyncio.sleep(0.01)  # the first batch is in flight now
    later = await asyncio.gather(*(c.submit(i) for i in (2, 4, 6)))
    assert await first == 0 and later == [20, 40, 60]
    assert rec.calls == [[0], [2, 4, 6]]


async def test_an_items_error_goes_to_its_caller_only() -> None:
    c: Coalescer[int, int] = Coalescer(Recorder())
    ok, bad = await asyncio.gather(c.submit(2), c.submit(3), return_exceptions=True)
    assert ok == 20
    assert isinstance(bad, ValueError) and str(bad) == "odd 3"


async def test_a_failed_call_fails_every_caller_of_that_batch() -> None:
    async def broken(items: list[int]) -> list[int]:
        raise ConnectionError("actor gone")

    c: Coalescer[int, int] = Coalescer(broken)
    results = await asyncio.gather(c.submit(1), c.submit(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    # and the next call still goes out
    c2: Coalescer[int, int] = Coalescer(Recorder())
    assert await c2.submit(4) == 40


async def test_max_batch_splits_and_a_wrong_result_count_is_an_error() -> None:
    rec = Recorder(delay=0)
    c: Coalescer[int, int] = Coalescer(rec, max_batch=3)
    assert await asyncio.gather(*(c.submit(i) for i in (0, 2, 4, 6, 8))) == [0, 20, 40, 60, 80]
    assert [len(call) for call in rec.calls] == [3, 2]

    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    bad: Coalescer[int, int] = Coalescer(short)
    with pytest.raises(RuntimeError, match="returned 1 of 2"):
        await asyncio.gather(bad.submit(1), bad.submit(2))


async def test_a_cancelled_caller_does_not_break_the_batch() -> None:
    rec = Recorder(delay=0.05)
    c: Coalescer[int, int] = Coalescer(rec)
    gone = asyncio.create_task(c.submit(2))
    kept = asyncio.create_task(c.submit(4))
    await asyncio.sleep(0.01)
    gone.cancel()
    assert await kept == 40
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_submit_all_returns_each_items_result_or_error_in_one_batch() -> None:
    rec = Recorder()
    c: Coalescer[int, int] = Coalescer(rec)
    first, second = await asyncio.gather(c.submit_all([1, 2]), c.submit_all([4, 5]))
    assert first[1] == 20 and isinstance(first[0], ValueError)
    assert second[0] == 40 and isinstance(second[1], ValueError)
    assert rec.calls == [[1, 2, 4, 5]]
