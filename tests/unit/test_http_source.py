from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from demo.app import demo_orders
from tests.kit.servers import DEMO_ROWS, oauth_app, serve_app
from tg_actors.errors import MissingSecret, PaginationLoop, SourceError
from tg_actors.jobs import HttpSource
from tg_actors.sources.http import HttpSourceClient, Page

Handler = Callable[[httpx.Request], httpx.Response]
SECRET = "s3cr3t-token-value"
ENV = {"TOKEN": SECRET, "USER": "alice", "PASSWORD": "pa55word!"}


def source(**fields: Any) -> HttpSource:
    return HttpSource.model_validate({"url": "http://api.test/orders", **fields})


async def no_wait(seconds: float) -> None:
    """Injected as the client's sleep: retries happen at once."""


async def collect(
    spec: HttpSource, handler: Handler, env: dict[str, str] | None = None
) -> list[Page]:
    client = HttpSourceClient(
        spec,
        env=ENV if env is None else env,
        transport=httpx.MockTransport(handler),
        sleep=no_wait,
    )
    return [page async for page in client.pages()]


class Recorder:
    """A MockTransport handler that answers from a function and keeps every request."""

    def __init__(self, answer: Callable[[httpx.Request], Any] = lambda r: {"data": [{"id": 1}]}):
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answer(request)
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)


@pytest.mark.parametrize(
    ("auth", "header", "query"),
    [
        ({"type": "none"}, None, {}),
        ({"type": "bearer", "token": "${TOKEN}"}, f"Bearer {SECRET}", {}),
        (
            {"type": "basic", "username": "${USER}", "password": "${PASSWORD}"},
            "Basic " + base64.b64encode(b"alice:pa55word!").decode(),
            {},
        ),
        ({"type": "api_key", "name": "X-Api-Key", "value": "${TOKEN}"}, None, {}),
        (
            {"type": "api_key", "name": "api_key", "value": "${TOKEN}", "in": "query"},
            None,
            {"api_key": SECRET},
        ),
    ],
)
async def test_auth(auth: dict[str, Any], header: str | None, query: dict[str, str]) -> None:
    recorder = Recorder()
    await collect(source(auth=auth, records="$.data"), recorder)
    (request,) = recorder.requests
    assert request.headers.get("Authorization") == header
    assert dict(request.url.params) == query
    if auth.get("name") == "X-Api-Key":
        assert request.headers["X-Api-Key"] == SECRET


async def test_oauth2_client_credentials_token_is_cached_until_shortly_before_expiry() -> None:
    tokens = iter(["at-first-token", "at-second-token"])
    token_requests: list[httpx.Request] = []
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            token_requests.append(request)
            return httpx.Response(200, json={"access_token": next(tokens), "expires_in": 600})
        seen.append(request.headers["Authorization"])
        page = int(request.url.params["page"])
        return httpx.Response(200, json={"data": [{"id": page}] if page <= 3 else []})

    now = [1000.0]
    spec = source(
        auth={
            "type": "oauth2_client_credentials",
            "token_url": "http://auth.test/token",
            "client_id": "client-1",
            "client_secret": "${TOKEN}",
            "scope": "orders:read",
        },
        records="$.data",
        paginate={"type": "page"},
    )
    client = HttpSourceClient(
        spec, env=ENV, transport=httpx.MockTransport(handler), clock=lambda: now[0]
    )
    assert len([p async for p in client.pages()]) == 4
    assert seen == ["Bearer at-first-token"] * 4
    (token_request,) = token_requests
    assert token_request.method == "POST"
    assert (
        token_request.headers["Authorization"]
        == "Basic " + base64.b64encode(f"client-1:{SECRET}".encode()).decode()
    )
    form = dict(httpx.QueryParams(token_request.content.decode()))
    assert form == {"grant_type": "client_credentials", "scope": "orders:read"}

    now[0] += 600 - 61  # still valid: reused by the next run
    assert len([p async for p in client.pages()]) == 4
    assert len(token_requests) == 1
    now[0] += 2  # within the renewal margin: a fresh token
    assert len([p async for p in client.pages()]) == 4
    assert len(token_requests) == 2 and seen[-1] == "Bearer at-second-token"


OAUTH = {
    "type": "oauth2_client_credentials",
    "token_url": "http://auth.test/token",
    "client_id": "client-1",
    "client_secret": "${TOKEN}",
}


async def test_oauth2_a_401_gets_one_fresh_token_and_the_request_again() -> None:
    issued: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            issued.append(f"tok-{len(issued) + 1}")
            return httpx.Response(200, json={"access_token": issued[-1], "expires_in": 3600})
        if request.headers["Authorization"] != f"Bearer {issued[-1]}" or len(issued) < 2:
            return httpx.Response(401, json={"error": "revoked"})  # tok-1 is revoked
        return httpx.Response(200, json={"data": [{"id": 1}]})

    pages = await collect(source(auth=OAUTH, records="$.data"), handler)
    assert [p.records for p in pages] == [[{"id": 1}]]
    assert issued == ["tok-1", "tok-2"]


async def test_oauth2_a_second_401_fails_and_the_token_is_not_kept() -> None:
    issued: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            issued.append(f"tok-{len(issued) + 1}")
            return httpx.Response(200, json={"access_token": issued[-1]})
        return httpx.Response(401, json={"error": f"no: {request.headers['Authorization']}"})

    client = HttpSourceClient(
        source(auth=OAUTH), env=ENV, transport=httpx.MockTransport(handler), sleep=no_wait
    )
    with pytest.raises(
        SourceError, match=r"returned HTTP 401: \{\"error\":\"no: Bearer \*\*\*"
    ) as caught:
        await anext(client.pages())
    assert caught.value.status == 401 and issued == ["tok-1", "tok-2"]
    with pytest.raises(SourceError):
        await anext(client.pages())
    assert issued == ["tok-1", "tok-2", "tok-3", "tok-4"]  # the next run asks afresh


async def test_oauth2_token_refresh_over_real_http() -> None:
    """A real token server revokes each token after two pages: every revocation costs one
    401 and one token request, and the run still gets every row."""
    app = oauth_app(rows=500, per_page=100, revoke_after=2)
    with serve_app(app) as base_url:
        spec = source(
            url=f"{base_url}/items",
            auth={**OAUTH, "token_url": f"{base_url}/token"},
            paginate={"type": "page", "size": 100},
            records="$.data",
        )
        client = HttpSourceClient(spec, env=ENV)
        records = [r async for page in client.pages() for r in page.records]
    assert [r["id"] for r in records] == list(range(1, 501))
    # pages 1-2 with tok-1, 401, pages 3-4 with tok-2, 401, page 5 (short: the last) with tok-3
    assert app.state.counts["issued"] == 3
    assert app.state.counts["unauthorized"] == 2


async def test_post_sends_the_json_body_and_params_in_the_query() -> None:
    recorder = Recorder()
    body = {"filter": {"status": "paid"}, "fields": ["id"]}
    await collect(source(method="POST", body=body, params={"v": 2}, records="$.data"), recorder)
    (request,) = recorder.requests
    assert request.method == "POST"
    assert json.loads(request.content) == body
    assert dict(request.url.params) == {"v": "2"}


async def test_the_urls_own_query_survives_params_and_pagination() -> None:
    recorder = Recorder(
        lambda r: {"data": [{"id": r.url.params["page"]}] if r.url.params["page"] == "1" else []}
    )
    spec = source(
        url="http://api.test/orders?status=paid&a=1",
        params={"a": 2, "flag": True},
        paginate={"type": "page"},
        auth={"type": "api_key", "name": "key", "value": "${TOKEN}", "in": "query"},
        records="$.data",
    )
    await collect(spec, recorder)
    assert [dict(r.url.params) for r in recorder.requests] == [
        {"status": "paid", "a": "2", "flag": "true", "page": str(n), "key": SECRET} for n in (1, 2)
    ]


async def test_pages_report_number_size_and_a_sanitized_url() -> None:
    recorder = Recorder()
    spec = source(url="http://api.test/orders?access_token=${TOKEN}", records="$.data")
    (page,) = await collect(spec, recorder)
    assert page.number == 1 and page.records == [{"id": 1}]
    assert page.bytes == len(b'{"data":[{"id":1}]}')
    assert SECRET not in page.url and "access_token=***" in page.url


async def test_http_error_names_method_sanitized_url_status_and_excerpt() -> None:
    body = f"upstream says no; your token was {SECRET}; " + "x" * 1000
    recorder = Recorder(lambda r: httpx.Response(503, text=body))
    spec = source(url="http://api.test/orders?token=${TOKEN}", params={"q": "a b"})
    with pytest.raises(SourceError) as caught:
        await collect(spec, recorder)
    message = str(caught.value)
    assert SECRET not in message and SECRET not in caught.value.url
    assert message.startswith(
        "GET http://api.test/orders?token=***&q=a+b returned HTTP 503 after 5 tries: "
    )
    assert "upstream says no; your token was ***" in message
    excerpt = message.split("after 5 tries: ", 1)[1]
    assert len(excerpt) == 300
    assert caught.value.status == 503
    assert len(recorder.requests) == 5  # 503 is retried: max_tries (5) tries in all


async def test_api_key_in_query_never_shows_in_errors() -> None:
    recorder = Recorder(lambda r: httpx.Response(401, json={"error": "bad key"}))
    spec = source(auth={"type": "api_key", "name": "k", "value": "${TOKEN}", "in": "query"})
    with pytest.raises(SourceError, match="returned HTTP 401") as caught:
        await collect(spec, recorder)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            httpx.ConnectError("connection refused"),
            "failed after 5 tries: ConnectError: connection refused",
        ),
        (httpx.ReadTimeout("read timed out"), "timed out after 30s, after 5 tries"),
        (httpx.UnsupportedProtocol("no such scheme"), "failed: UnsupportedProtocol"),
    ],
)
async def test_transport_errors_become_source_errors(error: Exception, message: str) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise error

    spec = source(url="http://api.test/orders?secret=${TOKEN}")
    with pytest.raises(SourceError, match=message) as caught:
        await collect(spec, handler)
    assert caught.value.__cause__ is error
    assert SECRET not in str(caught.value)
    # the network and timeouts get every try; a request that cannot work, one
    assert len(calls) == (1 if isinstance(error, httpx.UnsupportedProtocol) else 5)


async def test_a_body_that_is_not_json() -> None:
    recorder = Recorder(lambda r: httpx.Response(200, text="<html>hello</html>"))
    with pytest.raises(
        SourceError, match=r"GET http://api.test/orders: response is not JSON .*<html>"
    ):
        await collect(source(), recorder)


async def test_records_that_are_not_objects_name_request_and_path() -> None:
    recorder = Recorder(lambda r: {"data": [1, 2]})
    with pytest.raises(SourceError, match=r"GET http://api.test/orders: records path '\$\.data'"):
        await collect(source(records="$.data"), recorder)


async def test_empty_body_is_a_page_without_records() -> None:
    pages = await collect(source(), Recorder(lambda r: httpx.Response(204)))
    assert [(p.number, p.records) for p in pages] == [(1, [])]


async def test_max_pages_stops_an_endless_api() -> None:
    def answer(request: httpx.Request) -> Any:
        n = int(request.url.params.get("cursor", "0"))
        return {"data": [{"id": n}], "next_cursor": str(n + 1)}

    recorder = Recorder(answer)
    pages = await collect(
        source(records="$.data", paginate={"type": "cursor"}, max_pages=3), recorder
    )
    assert [p.number for p in pages] == [1, 2, 3]
    assert len(recorder.requests) == 3


async def test_a_looping_api_raises_pagination_loop() -> None:
    recorder = Recorder(lambda r: {"data": [{"id": 1}], "next": "http://api.test/orders?page=1"})
    spec = source(records="$.data", paginate={"type": "next_url"})
    with pytest.raises(
        PaginationLoop, match=r"^GET http://api.test/orders\?page=1: next_url pagination"
    ):
        await collect(spec, recorder)
    assert len(recorder.requests) == 2


async def test_secrets_resolve_at_run_time_only() -> None:
    spec = source(auth={"type": "bearer", "token": "${NOT_SET_ANYWHERE}"})
    client = HttpSourceClient(spec, env={}, transport=httpx.MockTransport(Recorder()))
    with pytest.raises(MissingSecret, match="NOT_SET_ANYWHERE"):
        await anext(client.pages())


# real HTTP: the demo source over uvicorn, 10,000 orders, every pagination style
EXPECTED = demo_orders(DEMO_ROWS)
STYLES: dict[str, dict[str, Any]] = {
    "page": {
        "paginate": {"type": "page", "size_param": "per_page", "size": 500},
        "records": "$.data",
    },
    "offset": {
        "paginate": {"type": "offset", "limit": 500, "total_path": "$.total"},
        "records": "$.data",
    },
    "cursor": {"paginate": {"type": "cursor"}, "params": {"per_page": 500}, "records": "$.data"},
    "link_header": {
        "paginate": {"type": "link_header"},
        "params": {"per_page": 500},
        "records": "$.data",
    },
    "next_url": {
        "paginate": {"type": "next_url"},
        "params": {"per_page": 500},
        "records": "$.data",
    },
    "bare list": {"path": "/orders.json", "records": "$"},
}


@pytest.mark.parametrize("style", list(STYLES))
async def test_demo_source_over_real_http(demo_server: str, style: str) -> None:
    fields = dict(STYLES[style])
    url = demo_server + fields.pop("path", "/orders")
    client = HttpSourceClient(source(url=url, **fields), env={})
    pages = [page async for page in client.pages()]
    records = [r for page in pages for r in page.records]
    assert len(records) == DEMO_ROWS
    assert {r["id"] for r in records} == set(range(1, DEMO_ROWS + 1))
    assert sum(r["amount"] for r in records) == pytest.approx(sum(o["amount"] for o in EXPECTED))
    assert records == EXPECTED
    # page pagination cannot know that a full page was the last: it asks once more
    expected_pages = {"bare list": 1, "page": DEMO_ROWS // 500 + 1}.get(style, DEMO_ROWS // 500)
    assert len(pages) == expected_pages


async def test_demo_source_updated_since(demo_server: str) -> None:
    since = "2024-02-01T00:00:00Z"
    spec = source(
        url=f"{demo_server}/orders",
        params={"updated_since": since, "per_page": 1000},
        paginate={"type": "link_header"},
        records="$.data",
    )
    records = [r async for page in HttpSourceClient(spec, env={}).pages() for r in page.records]
    expected = [o for o in EXPECTED if o["updated_at"] >= since]
    assert 0 < len(records) == len(expected) < DEMO_ROWS
    assert records == expected
