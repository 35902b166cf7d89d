"""Per-request retries, the rate limit hook and the incremental param of HttpSourceClient.

Edge cases over MockTransport, behaviour against a misbehaving real server on 127.0.0.1.
Sleeps are injected: no test waits for a real backoff.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from tests.kit.servers import DEMO_ROWS, FlakyAPI, serve_app
from tg_actors.errors import SourceError
from tg_actors.jobs import HttpSource
from tg_actors.sources.http import HttpSourceClient

SECRET = "s3cr3t-token-value"
ENV = {"TOKEN": SECRET, "CLIENT_SECRET": "client-secret-value"}


def source(**fields: Any) -> HttpSource:
    return HttpSource.model_validate({"url": "http://api.test/items", **fields})


class Sleeps:
    """The client's sleep: records each delay, waits for none of them."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def paged(rows: int, per_page: int, fail: Callable[[int], httpx.Response | None]) -> Any:
    """A MockTransport handler: `?page=N` pages of {"id": i}; `fail(n)` may replace the answer
    to the n-th request (1-based). Returns (handler, list of requests seen)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        failure = fail(len(seen))
        if failure is not None:
            return failure
        page = int(request.url.params.get("page", "1"))
        first = (page - 1) * per_page + 1
        ids = range(first, min(first + per_page, rows + 1))
        return httpx.Response(200, json={"data": [{"id": i} for i in ids]})

    return handler, seen


async def read_all(client: HttpSourceClient) -> list[dict[str, Any]]:
    return [r async for page in client.pages() for r in page.records]


PAGED = {"paginate": {"type": "page", "size": 10}, "records": "$.data"}


def retry_after_at(seconds: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [("7", 7.0, 7.0), ("120", 120.0, 120.0), (None, 0.0, 0.5)],
    ids=["seconds", "above max_backoff: honoured", "absent: jittered backoff"],
)
async def test_429_waits_as_retry_after_says(header: str | None, low: float, high: float) -> None:
    headers = {} if header is None else {"Retry-After": header}
    handler, seen = paged(
        45, 10, lambda n: httpx.Response(429, headers=headers) if n % 2 == 0 else None
    )
    sleeps = Sleeps()
    client = HttpSourceClient(source(**PAGED), transport=httpx.MockTransport(handler), sleep=sleeps)
    records = await read_all(client)
    assert [r["id"] for r in records] == list(range(1, 46))
    assert len(seen) == 5 + 4 and len(sleeps.delays) == 4  # requests 2, 4, 6, 8 were 429
    assert all(low <= d <= high for d in sleeps.delays), sleeps.delays


async def test_429_retry_after_as_an_http_date() -> None:
    handler, seen = paged(
        5,
        10,
        lambda n: (
            httpx.Response(429, headers={"Retry-After": retry_after_at(5)}) if n == 1 else None
        ),
    )
    sleeps = Sleeps()
    client = HttpSourceClient(source(**PAGED), transport=httpx.MockTransport(handler), sleep=sleeps)
    assert len(await read_all(client)) == 5
    (delay,) = sleeps.delays
    assert 3.5 < delay <= 5.0  # an HTTP date has whole seconds


async def test_backoff_doubles_with_full_jitter_and_the_cap() -> None:
    # the first request fails four times, then succeeds on the fifth and last try
    handler, seen = paged(3, 10, lambda n: httpx.Response(502) if n <= 4 else None)
    sleeps = Sleeps()
    spec = source(**PAGED, backoff="1s", max_backoff="3s")
    client = HttpSourceClient(
        spec, transport=httpx.MockTransport(handler), sleep=sleeps, rng=random.Random(5)
    )
    assert len(await read_all(client)) == 3
    ceilings = [1.0, 2.0, 3.0, 3.0]
    assert len(sleeps.delays) == 4
    assert all(0 <= d <= c for d, c in zip(sleeps.delays, ceilings, strict=True))
    # the same seed, the same delays: the jitter comes from the injected RNG
    again = Sleeps()
    handler, _ = paged(3, 10, lambda n: httpx.Response(502) if n <= 4 else None)
    client = HttpSourceClient(
        spec, transport=httpx.MockTransport(handler), sleep=again, rng=random.Random(5)
    )
    await read_all(client)
    assert again.delays == sleeps.delays


async def test_exhausting_the_tries_fails_the_page_naming_everything() -> None:
    body = "database is on fire " * 40
    handler, seen = paged(50, 10, lambda n: httpx.Response(503, text=body) if n >= 2 else None)
    spec = source(url="http://api.test/items?api_key=secret&q=1", **PAGED)
    pages = []
    with pytest.raises(SourceError) as caught:
        async for page in HttpSourceClient(
            spec, transport=httpx.MockTransport(handler), sleep=Sleeps()
        ).pages():
            pages.append(page)  # noqa: PERF401  (kept up to the failure)
    assert len(pages) == 1 and len(seen) == 1 + 5
    message = str(caught.value)
    assert message.startswith(
        "GET http://api.test/items?api_key=***&q=1&page=2 returned HTTP 503 after 5 tries: "
        "database is on fire"
    )
    assert len(message.split("after 5 tries: ", 1)[1]) == 300
    assert "secret" not in message and "secret" not in caught.value.url
    assert caught.value.status == 503


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
async def test_other_4xx_fail_at_once(status: int) -> None:
    handler, seen = paged(5, 10, lambda n: httpx.Response(status, json={"detail": "nope"}))
    sleeps = Sleeps()
    client = HttpSourceClient(source(**PAGED), transport=httpx.MockTransport(handler), sleep=sleeps)
    with pytest.raises(SourceError, match=rf"returned HTTP {status}: {{\"detail\":\"nope\"}}$"):
        await read_all(client)
    assert len(seen) == 1 and sleeps.delays == []


async def test_408_and_connection_errors_are_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused")
        if calls == 2:
            raise httpx.RemoteProtocolError("server disconnected")
        if calls == 3:
            return httpx.Response(408)
        if calls == 4:
            raise httpx.ReadTimeout("slow")
        return httpx.Response(200, json={"data": [{"id": 1}]})

    sleeps = Sleeps()
    client = HttpSourceClient(
        source(records="$.data"), transport=httpx.MockTransport(handler), sleep=sleeps
    )
    assert await read_all(client) == [{"id": 1}]
    assert calls == 5 and len(sleeps.delays) == 4


async def test_max_tries_one_means_no_retry() -> None:
    handler, seen = paged(5, 10, lambda n: httpx.Response(500, text="boom"))
    client = HttpSourceClient(
        source(**PAGED, max_tries=1), transport=httpx.MockTransport(handler), sleep=Sleeps()
    )
    with pytest.raises(SourceError, match=r"returned HTTP 500: boom$"):
        await read_all(client)
    assert len(seen) == 1


async def test_acquire_is_awaited_before_every_api_request_not_token_requests() -> None:
    order: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            order.append("token")
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 3600})
        order.append("request")
        if order.count("request") == 2:
            return httpx.Response(503)
        page = int(request.url.params["page"])
        return httpx.Response(200, json={"data": [{"id": page}] if page <= 2 else []})

    async def acquire() -> None:
        order.append("acquire")

    auth = {
        "type": "oauth2_client_credentials",
        "token_url": "http://auth.test/token",
        "client_id": "c",
        "client_secret": "${CLIENT_SECRET}",
    }
    spec = source(auth=auth, paginate={"type": "page"}, records="$.data")
    client = HttpSourceClient(
        spec, env=ENV, transport=httpx.MockTransport(handler), sleep=Sleeps(), acquire=acquire
    )
    assert len(await read_all(client)) == 2
    # page 1, page 2 (503), page 2 again, page 3 (empty): four tries, four acquires
    assert order == ["token"] + ["acquire", "request"] * 4


async def test_extra_params_are_on_every_request_built_from_params() -> None:
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        n = int(request.url.params.get("cursor", "0"))
        return httpx.Response(
            200, json={"data": [{"id": n}], "next_cursor": str(n + 1) if n < 2 else None}
        )

    spec = source(params={"status": "paid", "since": "old"}, paginate={"type": "cursor"})
    client = HttpSourceClient(
        spec,
        transport=httpx.MockTransport(handler),
        extra_params={"since": "2024-05-01T00:00:00Z"},
    )
    pages = [page async for page in client.pages()]
    assert len(pages) == 3
    assert [q.get("since") for q in seen] == ["2024-05-01T00:00:00Z"] * 3
    assert all(q["status"] == "paid" for q in seen)


async def test_extra_params_with_a_next_link_from_the_api(demo_server: str) -> None:
    """link_header: the API's next link carries the filter it was given; it is used as is."""
    since = "2024-02-01T00:00:00Z"
    app_seen: list[str] = []

    class Spy(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            app_seen.append(str(request.url))
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    spec = source(
        url=f"{demo_server}/orders",
        params={"per_page": 1000},
        paginate={"type": "link_header"},
        records="$.data",
    )
    client = HttpSourceClient(spec, transport=Spy(), extra_params={"updated_since": since})
    records = await read_all(client)
    assert len(app_seen) > 1
    assert all("updated_since=" in url for url in app_seen)
    assert 0 < len(records) < DEMO_ROWS
    assert all(r["updated_at"] >= since for r in records)


# real HTTP: one misbehaving server for the tests below
@pytest.fixture(scope="module")
def flaky() -> Iterator[tuple[FlakyAPI, str]]:
    api = FlakyAPI()
    with serve_app(api.app) as base_url:
        yield api, base_url


def assert_exact_rows(records: list[dict[str, Any]], api: FlakyAPI) -> None:
    """Count, distinct ids and the sum of amounts all as the server holds them."""
    assert len(records) == len(api.rows)
    assert {r["id"] for r in records} == {r["id"] for r in api.rows}
    assert sum(r["amount"] for r in records) == pytest.approx(sum(r["amount"] for r in api.rows))


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(500, None), (503, "0"), (429, "0"), (429, retry_after_at(-10))],
    ids=["500", "503 retry-after 0", "429 retry-after 0", "429 retry-after date"],
)
async def test_a_server_failing_every_third_request_still_gives_exact_rows(
    flaky: tuple[FlakyAPI, str], status: int, retry_after: str | None
) -> None:
    api, base_url = flaky
    api.reset(rows=1000, fail_every=3, status=status, retry_after=retry_after)
    spec = source(url=f"{base_url}/items", paginate={"type": "page", "size": 100}, records="$.data")
    sleeps = Sleeps()
    records = await read_all(HttpSourceClient(spec, sleep=sleeps))
    assert_exact_rows(records, api)
    assert api.failures == len(sleeps.delays) > 0
    # 10 pages + 1 empty, plus one retry per failure
    assert api.requests == 11 + api.failures


async def test_a_404_fails_at_once_with_the_url_sanitized(flaky: tuple[FlakyAPI, str]) -> None:
    api, base_url = flaky
    api.reset()
    spec = source(url=f"{base_url}/missing?api_key=secret&page_size=5")
    with pytest.raises(SourceError) as caught:
        await read_all(HttpSourceClient(spec, sleep=Sleeps()))
    message = str(caught.value)
    assert message.startswith(f"GET {base_url}/missing?api_key=***&page_size=5 returned HTTP 404:")
    assert "secret" not in message and caught.value.status == 404


async def test_a_refused_connection_is_retried_then_fails() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = source(url=f"http://127.0.0.1:{port}/x", max_tries=3)
    sleeps = Sleeps()
    with pytest.raises(SourceError, match=r"failed after 3 tries: ConnectError"):
        await read_all(HttpSourceClient(spec, sleep=sleeps))
    assert len(sleeps.delays) == 2


# -- Retry-After beyond max_backoff (issue 12 #14) ---------------------------------------


def too_many(seconds: str, times: int = 1) -> Any:
    """A handler: the first `times` requests get 429 with Retry-After `seconds`."""
    return paged(
        5,
        10,
        lambda n: httpx.Response(429, headers={"Retry-After": seconds}) if n <= times else None,
    )


async def test_a_429_asking_60s_is_waited_out_not_capped_at_max_backoff() -> None:
    handler, seen = too_many("60", times=2)
    sleeps = Sleeps()
    spec = source(**PAGED, max_backoff="30s", max_tries=3)
    client = HttpSourceClient(spec, transport=httpx.MockTransport(handler), sleep=sleeps)
    assert len(await read_all(client)) == 5
    assert sleeps.delays == [60.0, 60.0] and len(seen) == 3  # the third try succeeds


async def test_a_retry_after_past_the_bound_fails_at_once_naming_the_wait() -> None:
    handler, seen = too_many("3600", times=5)
    sleeps = Sleeps()
    spec = source(url="http://api.test/items?api_key=secret", **PAGED)
    client = HttpSourceClient(spec, transport=httpx.MockTransport(handler), sleep=sleeps)
    with pytest.raises(SourceError) as caught:
        await read_all(client)
    message = str(caught.value)
    assert message.startswith(
        "GET http://api.test/items?api_key=***&page=1 returned HTTP 429 asking to wait 3600s"
        " (Retry-After), more than TG_MAX_RETRY_AFTER (900s)"
    )
    assert caught.value.status == 429 and "secret" not in message
    assert sleeps.delays == [] and len(seen) == 1  # no sleep, no second try


async def test_tg_max_retry_after_sets_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_MAX_RETRY_AFTER", "2m")
    handler, _ = too_many("100")
    sleeps = Sleeps()
    client = HttpSourceClient(source(**PAGED), transport=httpx.MockTransport(handler), sleep=sleeps)
    assert len(await read_all(client)) == 5 and sleeps.delays == [100.0]
    handler, _ = too_many("121")
    client = HttpSourceClient(
        source(**PAGED), transport=httpx.MockTransport(handler), sleep=Sleeps()
    )
    with pytest.raises(SourceError, match=r"asking to wait 121s .*TG_MAX_RETRY_AFTER \(120s\)"):
        await read_all(client)


async def test_an_http_date_retry_after_is_read_on_the_injected_clock() -> None:
    from tg_actors.retry import RetryPolicy
    from tg_actors.sources.pagination import RequestSpec
    from tg_actors.sources.requester import Redactor, Requester, TokenCache

    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    at = format_datetime(now + timedelta(minutes=20), usegmt=True)  # 1200 s: past 900
    handler, seen = paged(1, 10, lambda n: httpx.Response(429, headers={"Retry-After": at}))
    sleeps = Sleeps()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        requester = Requester(
            http,
            method="GET",
            auth=HttpSource.model_validate({"url": "http://x"}).auth,
            policy=RetryPolicy(5, 0.5, 30.0),
            redactor=Redactor(set()),
            tokens=TokenCache(lambda: 0.0),
            sleep=sleeps,
            now=lambda: now,
        )
        with pytest.raises(SourceError, match=r"asking to wait 1200s"):
            await requester.send(RequestSpec("http://api.test/items", {}, {}, None))
    assert sleeps.delays == [] and len(seen) == 1


def test_tg_max_retry_after_reaches_the_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    from tg_actors.settings import Settings, max_retry_after

    assert Settings().max_retry_after == 900.0  # 15 min by default
    env = Settings(max_retry_after="20m").engine_env()  # runtime_env env_vars of the workers
    assert env["TG_MAX_RETRY_AFTER"] == "1200"
    monkeypatch.setenv("TG_MAX_RETRY_AFTER", env["TG_MAX_RETRY_AFTER"])
    assert max_retry_after() == 1200.0
    with pytest.raises(ValueError):
        Settings(max_retry_after="soon")
