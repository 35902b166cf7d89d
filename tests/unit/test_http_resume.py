"""Checkpoints: every page tells how to continue right after it; a NEW client resumes there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from demo.app import build_demo_app, demo_orders
from tests.kit.servers import CountingApp, serve_app
from tg_actors.errors import PaginationLoop, SourceError
from tg_actors.jobs import HttpSource
from tg_actors.sources.http import HttpSourceClient, Page

ROWS = 2000
SECRET = "s3cr3t-token-value"


def source(**fields: Any) -> HttpSource:
    return HttpSource.model_validate({"url": "http://api.test/items", **fields})


async def no_wait(seconds: float) -> None:
    pass


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[CountingApp, str]]:
    """The demo orders API (2,000 orders) behind a request counter."""
    counting = CountingApp(Starlette(routes=[Mount("/demo", app=build_demo_app(ROWS))]))
    with serve_app(counting) as base_url:
        yield counting, f"{base_url}/demo/orders"


# style -> (source fields, pages in a full run)
STYLES: dict[str, tuple[dict[str, Any], int]] = {
    "page": ({"paginate": {"type": "page", "size_param": "per_page", "size": 100}}, 21),
    "page with total (parallel)": (
        {
            "paginate": {
                "type": "page",
                "size_param": "per_page",
                "size": 100,
                "total_path": "$.total",
            }
        },
        20,
    ),
    "offset": ({"paginate": {"type": "offset", "limit": 100}}, 21),
    "offset with total (parallel)": (
        {"paginate": {"type": "offset", "limit": 100, "total_path": "$.total"}},
        20,
    ),
    "cursor": ({"paginate": {"type": "cursor"}, "params": {"per_page": 100}}, 20),
    "link_header": ({"paginate": {"type": "link_header"}, "params": {"per_page": 100}}, 20),
    "next_url": ({"paginate": {"type": "next_url"}, "params": {"per_page": 100}}, 20),
}


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("k", [1, 7])
async def test_resume_after_page_k_fetches_exactly_the_remaining_pages(
    demo: tuple[CountingApp, str], style: str, k: int
) -> None:
    counting, url = demo
    fields, total_pages = STYLES[style]
    spec = source(url=url, records="$.data", **fields)
    pages = [page async for page in HttpSourceClient(spec).pages()]
    assert len(pages) == total_pages
    assert [p.checkpoint is None for p in pages] == [False] * (total_pages - 1) + [True]

    saved = json.loads(json.dumps(pages[k - 1].checkpoint))  # as a database would keep it
    counting.seen.clear()
    resumed = [page async for page in HttpSourceClient(spec).pages(resume=saved)]
    assert len(counting.seen) == total_pages - k  # nothing before page k+1 is fetched again
    assert [p.number for p in resumed] == list(range(k + 1, total_pages + 1))
    records = [r for p in pages[:k] + resumed for r in p.records]
    assert records == demo_orders(ROWS)
    # the resumed run's checkpoints are the ones the full run had
    assert [p.checkpoint for p in resumed] == [p.checkpoint for p in pages[k:]]


def cursor_api(cursors: dict[str, str | None]) -> tuple[Any, list[httpx.Request]]:
    """`?cursor=c` answers one record and the next cursor from `cursors` ("" = first page)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        cursor = request.url.params.get("cursor", "")
        return httpx.Response(
            200, json={"data": [{"id": cursor or "start"}], "next_cursor": cursors[cursor]}
        )

    return handler, seen


async def test_checkpoints_hold_references_not_secrets() -> None:
    handler, seen = cursor_api({"": "a", "a": "b", "b": None})
    spec = source(
        url="http://api.test/items?access_token=${TOKEN}",
        headers={"X-Tenant": "${TOKEN}"},
        paginate={"type": "cursor"},
        records="$.data",
    )
    env = {"TOKEN": SECRET}
    client = HttpSourceClient(spec, env=env, transport=httpx.MockTransport(handler))
    async with aclosing(client.pages()) as run:
        first = await anext(run)
    text = json.dumps(first.checkpoint)
    assert SECRET not in text and "${TOKEN}" in text
    assert first.checkpoint is not None
    assert first.checkpoint["request"] == {
        "url": "http://api.test/items?access_token=${TOKEN}",
        "params": {"cursor": "a"},
    }
    seen.clear()
    resumed = HttpSourceClient(spec, env=env, transport=httpx.MockTransport(handler))
    pages = [p async for p in resumed.pages(resume=json.loads(text))]
    assert [p.records for p in pages] == [[{"id": "a"}], [{"id": "b"}]]
    assert [dict(r.url.params) for r in seen] == [
        {"access_token": SECRET, "cursor": c} for c in ("a", "b")
    ]
    assert all(r.headers["X-Tenant"] == SECRET for r in seen)


async def test_the_loop_guard_remembers_across_a_resume() -> None:
    handler, seen = cursor_api({"": "a", "a": "b", "b": "a"})  # b points back to a
    spec = source(paginate={"type": "cursor"}, records="$.data")
    client = HttpSourceClient(spec, transport=httpx.MockTransport(handler))
    with pytest.raises(PaginationLoop):
        [p async for p in client.pages()]
    pages: list[Page] = []
    client = HttpSourceClient(spec, transport=httpx.MockTransport(handler))
    async with aclosing(client.pages()) as run:
        pages.append(await anext(run))
    with pytest.raises(PaginationLoop, match="cursor 'a', which this run already requested"):
        [p async for p in client.pages(resume=pages[0].checkpoint)]


async def test_max_pages_counts_across_a_resume() -> None:
    cursors: dict[str, str | None] = {"": "1", **{str(n): str(n + 1) for n in range(1, 20)}}
    handler, seen = cursor_api(cursors)
    spec = source(paginate={"type": "cursor"}, records="$.data", max_pages=5)
    client = HttpSourceClient(spec, transport=httpx.MockTransport(handler))
    async with aclosing(client.pages()) as run:
        first_two = [await anext(run), await anext(run)]
    seen.clear()
    rest = [p async for p in client.pages(resume=first_two[-1].checkpoint)]
    assert [p.number for p in rest] == [3, 4, 5] and len(seen) == 3
    assert rest[-1].checkpoint is None


async def test_a_parallel_run_that_fails_resumes_after_the_last_page_it_yielded() -> None:
    """Page 6 fails (out of tries) while later pages are in flight: pages 1-5 come out, in
    order, with their checkpoints; a new run resumes at page 6 once the API recovers."""
    broken = {"page": 6}
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        seen.append(page)
        if page == broken["page"]:
            return httpx.Response(500, text="down")
        ids = range((page - 1) * 10 + 1, min(page * 10, 195) + 1)
        return httpx.Response(200, json={"data": [{"id": i} for i in ids], "total": 195})

    spec = source(
        paginate={"type": "page", "total_path": "$.total"},
        records="$.data",
        max_tries=2,
        concurrency=4,
    )
    client = HttpSourceClient(spec, transport=httpx.MockTransport(handler), sleep=no_wait)
    pages: list[Page] = []
    with pytest.raises(SourceError, match=r"page=6 returned HTTP 500 after 2 tries"):
        async for page in client.pages():
            pages.append(page)  # noqa: PERF401  (kept up to the failure)
    assert [p.number for p in pages] == [1, 2, 3, 4, 5]
    assert max(seen) > 6  # later pages were in flight
    broken["page"] = 0
    seen.clear()
    rest = [p async for p in client.pages(resume=pages[-1].checkpoint)]
    assert sorted(seen) == list(range(6, 21))
    records = [r["id"] for p in pages + rest for r in p.records]
    assert records == list(range(1, 196))


@pytest.mark.parametrize(
    ("checkpoint", "message"),
    [
        ({"version": 1}, "the checkpoint is malformed"),
        ({"version": 99, "page": 1, "request": {"url": "x", "params": {}}}, "malformed"),
        (
            {
                "version": 1,
                "page": 1,
                "request": {"url": "http://api.test/items", "params": {}},
                "paginator": {"type": "offset", "page": 1, "seen": [], "last_digest": None},
            },
            "cannot resume cursor pagination from a checkpoint of 'offset' pagination",
        ),
        (
            {
                "version": 1,
                "page": 1,
                "request": {"url": "http://api.test/items", "params": {}},
                "paginator": {"type": "cursor", "page": "one", "seen": [], "last_digest": None},
            },
            "cursor pagination: the checkpoint is malformed",
        ),
    ],
)
async def test_a_checkpoint_that_does_not_fit(checkpoint: dict[str, Any], message: str) -> None:
    handler, seen = cursor_api({"": None})
    client = HttpSourceClient(
        source(paginate={"type": "cursor"}), transport=httpx.MockTransport(handler)
    )
    with pytest.raises(SourceError, match=message):
        await anext(client.pages(resume=checkpoint))
    assert seen == []
