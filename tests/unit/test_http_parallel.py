"""Parallel fetch: pages addressable in advance (page/offset with a total) are fetched several
at once and yielded in order; rate limits and max_pages still hold."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest
from aiolimiter import AsyncLimiter

from tests.kit.servers import FlakyAPI, serve_app
from tg_actors.errors import PaginationLoop
from tg_actors.jobs import HttpSource
from tg_actors.sources.http import HttpSourceClient, Page
from tg_actors.sources.parallel import Window

PAGE_TOTAL = {"type": "page", "size_param": "per_page", "size": 50, "total_path": "$.total"}
OFFSET_TOTAL = {"type": "offset", "limit": 50, "total_path": "$.total"}


@pytest.fixture(scope="module")
def flaky() -> Iterator[tuple[FlakyAPI, str]]:
    api = FlakyAPI()
    with serve_app(api.app) as base_url:
        yield api, f"{base_url}/items"


def source(url: str, paginate: dict[str, Any], **fields: Any) -> HttpSource:
    return HttpSource.model_validate(
        {"url": url, "paginate": paginate, "records": "$.data", **fields}
    )


async def no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


async def run(client: HttpSourceClient) -> list[Page]:
    return [page async for page in client.pages()]


def assert_in_order_and_exact(pages: list[Page], api: FlakyAPI) -> None:
    assert [p.number for p in pages] == list(range(1, len(pages) + 1))
    records = [r for p in pages for r in p.records]
    assert records == api.rows  # count, ids, amounts, and the order


@pytest.mark.parametrize("paginate", [PAGE_TOTAL, OFFSET_TOTAL], ids=["page", "offset"])
@pytest.mark.parametrize("concurrency", [1, 4, 8])
async def test_pages_come_in_order_with_up_to_concurrency_in_flight(
    flaky: tuple[FlakyAPI, str], paginate: dict[str, Any], concurrency: int
) -> None:
    api, url = flaky
    api.reset(rows=500, per_page=50, delay=0.05)
    pages = await run(HttpSourceClient(source(url, paginate, concurrency=concurrency)))
    assert_in_order_and_exact(pages, api)
    assert len(pages) == api.requests == 10  # the total ends it: no extra empty page
    assert api.max_in_flight == concurrency
    assert api.queries[0] in ({"page": "1", "per_page": "50"}, {"offset": "0", "limit": "50"})


async def test_parallel_with_a_failing_server_still_gives_exact_rows(
    flaky: tuple[FlakyAPI, str],
) -> None:
    api, url = flaky
    api.reset(rows=1000, per_page=50, delay=0.005, fail_every=3, status=500)
    client = HttpSourceClient(source(url, PAGE_TOTAL, concurrency=4), sleep=no_wait)
    pages = await run(client)
    assert_in_order_and_exact(pages, api)
    assert api.failures > 0 and api.requests == 20 + api.failures


async def test_an_api_that_caps_the_page_size(flaky: tuple[FlakyAPI, str]) -> None:
    """Asked for 100 a page, the API gives 40: the first page's length is the page size."""
    api, url = flaky
    api.reset(rows=1000, max_per_page=40)
    paginate = {**PAGE_TOTAL, "size": 100}
    pages = await run(HttpSourceClient(source(url, paginate, concurrency=4)))
    assert_in_order_and_exact(pages, api)
    assert len(pages) == 25


async def test_max_pages_caps_what_is_requested(flaky: tuple[FlakyAPI, str]) -> None:
    api, url = flaky
    api.reset(rows=1000, per_page=50, delay=0.01)
    pages = await run(HttpSourceClient(source(url, PAGE_TOTAL, concurrency=4, max_pages=5)))
    assert [p.number for p in pages] == [1, 2, 3, 4, 5]
    assert api.requests == 5 and pages[-1].checkpoint is None


async def test_the_loop_guard_still_applies(flaky: tuple[FlakyAPI, str]) -> None:
    api, url = flaky
    api.reset(rows=1000, per_page=50, ignore_paging=True)
    with pytest.raises(PaginationLoop, match="page 2 has the same 50 records as page 1"):
        await run(HttpSourceClient(source(url, PAGE_TOTAL, concurrency=4)))


def max_in_window(times: list[float], window: float) -> int:
    return max(sum(1 for t in times[i:] if t < start + window) for i, start in enumerate(times))


async def test_the_rate_limit_holds_with_requests_in_flight(flaky: tuple[FlakyAPI, str]) -> None:
    api, url = flaky
    api.reset(rows=600, per_page=50)  # 12 pages
    spec = source(url, PAGE_TOTAL, concurrency=4, rate_limit={"per_second": 20})
    pages = await run(HttpSourceClient(spec))
    assert_in_order_and_exact(pages, api)
    times = api.times
    assert len(times) == 12
    assert times[-1] - times[0] >= 11 / 20 * 0.9  # one request every 50 ms, no burst
    assert max_in_window(times, 0.25) <= 0.25 * 20 + 1


async def test_a_shared_acquire_limits_several_clients_together(
    flaky: tuple[FlakyAPI, str],
) -> None:
    """The engine's hook: one limiter for every client of a job, whatever each one's
    concurrency (here a local AsyncLimiter stands in for the Ray limiter)."""
    api, url = flaky
    api.reset(rows=300, per_page=50)  # 6 pages a client
    limiter = AsyncLimiter(1, 1 / 25)  # 25 requests/s, no burst

    async def acquire() -> None:
        await limiter.acquire()

    spec = source(url, PAGE_TOTAL, concurrency=4)
    clients = [HttpSourceClient(spec, acquire=acquire) for _ in range(3)]
    results = await asyncio.gather(*(run(c) for c in clients))
    assert all(len(pages) == 6 for pages in results)
    assert len(api.times) == 18
    assert api.times[-1] - api.times[0] >= 17 / 25 * 0.9
    assert max_in_window(api.times, 0.2) <= 0.2 * 25 + 1


async def test_stopping_early_cancels_what_is_in_flight(flaky: tuple[FlakyAPI, str]) -> None:
    api, url = flaky
    api.reset(rows=1000, per_page=50, delay=0.05)
    client = HttpSourceClient(source(url, PAGE_TOTAL, concurrency=4))
    async with aclosing(client.pages()) as pages:
        first = await anext(pages)
    assert first.number == 1
    assert asyncio.all_tasks() == {asyncio.current_task()}  # no fetch outlives the run
    await asyncio.sleep(0.1)
    assert api.requests <= 5  # page 1 and at most the 4 that were in flight


async def test_an_api_off_the_plan_is_followed_not_the_plan() -> None:
    """offset with a total: planned offsets 10, 20, 30, 40; the page at 20 comes back short
    (rows deleted meanwhile), so the next offset is 25: the plan is dropped and rebuilt."""
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        offset = int(request.url.params["offset"])
        seen.append(offset)
        size = 5 if offset == 20 else 10
        ids = range(offset, min(offset + size, 50))
        return httpx.Response(200, json={"data": [{"id": i} for i in ids], "total": 50})

    spec = source("http://api.test/items", {"type": "offset", "limit": 10, "total_path": "$.total"})
    client = HttpSourceClient(spec, transport=httpx.MockTransport(handler))
    pages = await run(client)
    offsets = [int(httpx.URL(p.url).params["offset"]) for p in pages]
    assert offsets == [0, 10, 20, 25, 35, 45]
    assert {0, 10, 20, 25, 35, 45} <= set(seen)


async def test_window_hands_results_back_in_push_order() -> None:
    finished: list[int] = []

    async def fetch(n: int) -> int:
        await asyncio.sleep({1: 0.03, 2: 0.02, 3: 0.01, 4: 0.0, 5: 0.2}[n])  # 1-3: backwards
        finished.append(n)
        if n == 4:
            raise ValueError("four")
        return n * 10

    window: Window[int, int] = Window(fetch, size=3)
    for n in (1, 2, 3):
        window.push(n)
    assert window.free == 0 and window.keys() == [1, 2, 3]
    with pytest.raises(RuntimeError, match="full"):
        window.push(9)
    assert [await window.pop() for _ in range(2)] == [(1, 10), (2, 20)]
    window.push(4)
    window.push(5)
    assert await window.pop() == (3, 30)
    with pytest.raises(ValueError, match="four"):
        await window.pop()
    window.clear()  # 5 is cancelled, not awaited here
    await window.aclose()
    assert len(window) == 0 and 5 not in finished
    assert finished[:3] == [3, 2, 1]
