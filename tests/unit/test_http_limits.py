"""Huge pages: a body past `source.max_page_bytes` is refused while it
streams in, announced by Content-Length or not; one under the limit reads as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from tg_actors.errors import SourceError
from tg_actors.jobs import HttpSource
from tg_actors.sources.http import HttpSourceClient

ROWS = [{"id": i, "note": "x" * 1000} for i in range(1, 101)]  # ~110 kB of JSON
BODY = orjson.dumps({"data": ROWS})


def source(**fields: Any) -> HttpSource:
    return HttpSource.model_validate(
        {"url": "http://api.test/items", "records": "$.data", **fields}
    )


async def chunks(body: bytes, size: int = 8192) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def transport(*, announced: bool, seen: list[int]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(1)
        if announced:
            return httpx.Response(200, content=BODY, headers={"content-type": "application/json"})
        return httpx.Response(200, content=chunks(BODY))  # chunked: no Content-Length

    return httpx.MockTransport(handler)


async def read(client: HttpSourceClient) -> list[dict[str, Any]]:
    return [r async for page in client.pages() for r in page.records]


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked"])
async def test_a_page_over_max_page_bytes_fails_clearly_at_once(announced: bool) -> None:
    seen: list[int] = []
    client = HttpSourceClient(
        source(max_page_bytes=50_000), transport=transport(announced=announced, seen=seen)
    )
    with pytest.raises(SourceError) as caught:
        await read(client)
    message = str(caught.value)
    assert "GET http://api.test/items" in message
    assert "larger than source.max_page_bytes (50,000 bytes)" in message
    assert seen == [1]  # not retried: the same page would be as big again


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked"])
async def test_a_page_under_the_limit_reads_whole(announced: bool) -> None:
    seen: list[int] = []
    client = HttpSourceClient(
        source(max_page_bytes=len(BODY)), transport=transport(announced=announced, seen=seen)
    )
    assert await read(client) == ROWS


def test_the_default_limit_is_256_mib() -> None:
    assert source().max_page_bytes == 256 * 1024 * 1024
