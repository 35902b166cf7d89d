"""The long tail of HTTP pagination against real servers on 127.0.0.1: the next URL in a
response header (relative links resolved), a GraphQL cursor in the POST body with
`has_more_path`, `has_more_path` on page and offset, and `expect_total` (a body path or
X-Total-Count) that fails a read which fetched another number of records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.kit.servers import serve_app
from tg_actors.errors import JobValidationError, SourceError
from tg_actors.jobs import HttpSource, parse_job
from tg_actors.sources.http import HttpSourceClient

ITEMS = [{"id": i, "name": f"item {i}"} for i in range(1, 24)]  # 23: pages of 5, the last short
SIZE = 5


def _slice(after: int) -> tuple[list[dict[str, Any]], int | None]:
    chunk = [item for item in ITEMS if item["id"] > after][:SIZE]
    last = chunk[-1]["id"] if chunk else None
    return chunk, (last if last is not None and last < ITEMS[-1]["id"] else None)


async def header_pages(request: Request) -> Response:
    """`Next-Page: /header/items?after=N` (relative), absent on the last page."""
    chunk, nxt = _slice(int(request.query_params.get("after", 0)))
    headers = {"Next-Page": f"/header/items?after={nxt}"} if nxt else {}
    headers["X-Total-Count"] = str(len(ITEMS))
    return JSONResponse(chunk, headers=headers)


GRAPHQL_SEEN: list[Any] = []


async def graphql(request: Request) -> Response:
    """`{data: {items: {nodes, pageInfo: {endCursor, hasNextPage}}}}`; the cursor is
    `variables.after` in the POST body; the end cursor stays set on the last page (as GitHub's
    does), so only hasNextPage says it is the last."""
    body = json.loads(await request.body())
    GRAPHQL_SEEN.append(body)
    after = body.get("variables", {}).get("after")
    chunk, nxt = _slice(int(after) if after else 0)
    info = {"endCursor": str(chunk[-1]["id"]), "hasNextPage": nxt is not None}
    return JSONResponse({"data": {"items": {"nodes": chunk, "pageInfo": info}}})


async def counted(request: Request) -> Response:
    """By page number or offset, `has_more` in the body, `total` and X-Total-Count claiming `claim`."""
    query = request.query_params
    start = int(query["offset"]) if "offset" in query else (int(query.get("page", 1)) - 1) * SIZE
    items = ITEMS[: int(query.get("n", len(ITEMS)))]
    claim = int(query.get("claim", len(items)))
    chunk = items[start : start + SIZE]
    more = start + SIZE < len(items)
    body = {"data": chunk, "has_more": more, "total": claim}
    return JSONResponse(body, headers={"X-Total-Count": str(claim)})


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    routes = [
        Route("/header/items", header_pages),
        Route("/graphql", graphql, methods=["POST"]),
        Route("/counted", counted),
    ]
    with serve_app(Starlette(routes=routes)) as url:
        yield url


def source(**fields: Any) -> HttpSource:
    return HttpSource.model_validate(fields)


async def read(spec: HttpSource, resume: dict[str, Any] | None = None) -> list[Any]:
    return [page async for page in HttpSourceClient(spec, env={}).pages(resume=resume)]


def ids(pages: list[Any]) -> list[int]:
    return [r["id"] for page in pages for r in page.records]


async def test_next_url_from_a_response_header_resolves_relative_links(base: str) -> None:
    spec = source(url=f"{base}/header/items", paginate={"type": "next_url", "header": "Next-Page"})
    pages = await read(spec)
    assert ids(pages) == [i["id"] for i in ITEMS] and len(pages) == 5
    assert pages[1].url == f"{base}/header/items?after=5"


async def test_a_graphql_cursor_goes_into_the_body_and_has_next_page_ends_it(base: str) -> None:
    GRAPHQL_SEEN.clear()
    query = "query($after: String) { items(first: 5, after: $after) { nodes { id } } }"
    spec = source(
        url=f"{base}/graphql",
        method="POST",
        body={"query": query, "variables": {"after": None}},
        records="$.data.items.nodes",
        paginate={
            "type": "cursor",
            "path": "$.data.items.pageInfo.endCursor",
            "body_path": "variables.after",
            "has_more_path": "$.data.items.pageInfo.hasNextPage",
        },
    )
    pages = await read(spec)
    assert ids(pages) == [i["id"] for i in ITEMS]
    assert [b["variables"]["after"] for b in GRAPHQL_SEEN] == [None, "5", "10", "15", "20"]
    assert all(b["query"] == query for b in GRAPHQL_SEEN)
    # a resumed read continues with the body cursor of its checkpoint
    saved = json.loads(json.dumps(pages[1].checkpoint))
    GRAPHQL_SEEN.clear()
    rest = await read(spec, resume=saved)
    assert ids(rest) == [i["id"] for i in ITEMS if i["id"] > 10]
    assert [b["variables"]["after"] for b in GRAPHQL_SEEN] == ["10", "15", "20"]


@pytest.mark.parametrize(
    ("paginate", "n"),
    [
        ({"type": "page", "param": "page", "start": 1, "has_more_path": "$.has_more"}, 23),
        # 20 records, full pages: without has_more_path a fifth, empty page would be asked
        ({"type": "offset", "limit": SIZE, "has_more_path": "$.has_more"}, 20),
    ],
)
async def test_has_more_path_ends_page_and_offset_without_an_empty_page(
    base: str, paginate: dict[str, Any], n: int
) -> None:
    spec = source(url=f"{base}/counted", params={"n": n}, records="$.data", paginate=paginate)
    pages = await read(spec)
    assert ids(pages) == [i["id"] for i in ITEMS[:n]] and len(pages) == -(-n // SIZE)


@pytest.mark.parametrize(
    "expect", ["$.total", {"header": "X-Total-Count"}], ids=["body path", "header"]
)
async def test_expect_total_passes_a_full_read_and_fails_a_short_one(
    base: str, expect: Any
) -> None:
    paginate = {"type": "page", "param": "page", "start": 1, "has_more_path": "$.has_more"}
    spec = source(url=f"{base}/counted", records="$.data", paginate=paginate, expect_total=expect)
    assert len(ids(await read(spec))) == len(ITEMS)
    claims_more = source(
        url=f"{base}/counted",
        params={"claim": 30},
        records="$.data",
        paginate=paginate,
        expect_total=expect,
    )
    with pytest.raises(SourceError, match="fetched 23 of 30 records the server reported"):
        await read(claims_more)


async def test_expect_total_counts_across_a_resume(base: str) -> None:
    paginate = {"type": "page", "param": "page", "start": 1, "has_more_path": "$.has_more"}
    spec = source(
        url=f"{base}/counted",
        params={"claim": 24},
        records="$.data",
        paginate=paginate,
        expect_total="$.total",
    )
    first = HttpSourceClient(spec, env={}).pages()
    page = await anext(first)
    await first.aclose()
    with pytest.raises(SourceError, match="fetched 23 of 24"):
        await read(spec, resume=json.loads(json.dumps(page.checkpoint)))


async def test_expect_total_is_not_checked_under_an_incremental_filter(base: str) -> None:
    paginate = {"type": "page", "param": "page", "start": 1, "has_more_path": "$.has_more"}
    spec = source(
        url=f"{base}/counted",
        params={"claim": 99},
        records="$.data",
        paginate=paginate,
        expect_total="$.total",
    )
    filtered = HttpSourceClient(spec, env={}, extra_params={"since": "2024"})
    assert len([p async for p in filtered.pages()]) == 5


def test_a_body_cursor_needs_post_and_an_object_body() -> None:
    job = {
        "name": "g",
        "source": {"url": "http://x/graphql", "paginate": {"type": "cursor", "body_path": "v.a"}},
        "destination": {"table": "t"},
    }
    with pytest.raises(JobValidationError) as info:
        parse_job(job, "g.yaml")
    assert str(info.value) == (
        "g.yaml: source.paginate.body_path: puts the cursor into a JSON body: method must be POST"
    )
    job["source"] = {**job["source"], "method": "POST", "body": ["not", "an", "object"]}
    with pytest.raises(JobValidationError, match="needs a JSON object body"):
        parse_job(job, "g.yaml")
    job["source"]["paginate"] = {"type": "cursor", "body_path": "bad path"}
    with pytest.raises(JobValidationError, match="source.paginate.cursor.body_path|body_path"):
        parse_job(job, "g.yaml")


EXAMPLES = Path(__file__).resolve().parents[2] / "configs" / "examples" / "longtail"


@pytest.mark.parametrize("name", ["graphql_items", "next_page_header"])
async def test_the_shipped_examples_read_every_record(base: str, name: str) -> None:
    text = (EXAMPLES / f"{name}.yaml").read_text().replace("http://127.0.0.1:8000", base)
    spec = parse_job(yaml.safe_load(text), f"{name}.yaml")
    assert ids(await read(spec.source)) == [i["id"] for i in ITEMS]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"paginate": {"type": "cursor"}}, "source.paginate.path: is a JSONPath into a JSON body"),
        ({"paginate": {"type": "next_url"}}, "take the next URL from a header"),
        ({"paginate": {"type": "page", "has_more_path": "$.more"}}, "source.paginate.has_more_path"),
        ({"expect_total": "$.total"}, "source.expect_total: is a JSONPath into a JSON body"),
    ],
)  # fmt: skip
def test_body_paths_are_refused_for_jsonl_and_csv(fields: dict[str, Any], message: str) -> None:
    for fmt in ("jsonl", "csv"):
        job = {"name": "j", "source": {"url": "http://x", "format": fmt, **fields},
               "destination": {"table": "t"}}  # fmt: skip
        with pytest.raises(JobValidationError) as info:
            parse_job(job, "j.yaml")
        assert message in str(info.value)
    ok = {"name": "j", "source": {"url": "http://x", "format": "jsonl",
          "paginate": {"type": "next_url", "header": "Next-Page"},
          "expect_total": {"header": "X-Total-Count"}}, "destination": {"table": "t"}}  # fmt: skip
    assert parse_job(ok).source.format == "jsonl"
