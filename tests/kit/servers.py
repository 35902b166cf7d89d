"""Real HTTP for tests: an ASGI app served by uvicorn on 127.0.0.1, in a background thread,
and the apps tests serve (the demo source, slow pages, FlakyAPI, an OAuth token server, a
webhook Receiver).

    with serve_app(app) as base_url:          # "http://127.0.0.1:<free port>"
        httpx.get(f"{base_url}/health")

The session fixtures `demo_server` and `slow_server` are defined here and offered to every
test by tests/conftest.py: name them as arguments, import nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from demo.app import build_demo_app
from tg_actors.cli.local_server import ThreadedServer

DEMO_ROWS = 10_000


@contextmanager
def serve_app(app: Any, *, ready_timeout: float = 15.0) -> Iterator[str]:
    """Serve `app` while the block runs; yields its base URL (the product's ThreadedServer,
    on a port the OS picks, so no two tests race for one)."""
    server = ThreadedServer(app, "127.0.0.1", 0).start(ready_timeout)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def demo_server() -> Iterator[str]:
    """Base URL of the demo source with 10,000 orders, mounted at /demo as serve/app.py does
    (so it ends in `/demo`: `f"{demo_server}/orders"`)."""
    app = Starlette(routes=[Mount("/demo", app=build_demo_app(DEMO_ROWS))])
    with serve_app(app) as base_url:
        yield f"{base_url}/demo"


def slow_pages_app(pages: int, rows_per_page: int, delay: float) -> Starlette:
    """`GET /items?page=N` (1-based): `rows_per_page` rows after `delay` seconds; empty after
    the last page. For runs that must still be running while a test acts on them."""

    async def items(request: Request) -> JSONResponse:
        page = int(request.query_params.get("page", "1"))
        await asyncio.sleep(delay)
        if page > pages:
            return JSONResponse([])
        first = (page - 1) * rows_per_page
        return JSONResponse([{"id": first + i, "page": page} for i in range(1, rows_per_page + 1)])

    return Starlette(routes=[Route("/items", items)])


@pytest.fixture(scope="session")
def slow_server() -> Iterator[str]:
    """10 pages x 100 rows, 0.4 s a page (~4 s a run)."""
    with serve_app(slow_pages_app(10, 100, 0.4)) as base_url:
        yield base_url


class FlakyAPI:
    """`GET /items`: rows 1..`rows` as `{"data": [...], "total": rows}`, paged by
    `?page=N&per_page=M` (1-based) or `?offset=O&limit=L`; misbehaves on demand:

    - `fail_every=3`: every third request to /items answers `status` (with `Retry-After:
      retry_after` when given) instead of data;
    - `delay`: seconds each answer takes (requests overlap: `max_in_flight` shows how many);
    - `max_per_page`: the API caps the page size it is asked for;
    - `ignore_paging`: always answers the first page (an API that ignores the parameter).

    Counts what it saw: `stats` in-process, or `GET /stats` over HTTP. `reset(**config)` sets a
    new behaviour and zeroes the counts, so one server serves a whole test module.
    """

    def __init__(self, rows: int = 1000, per_page: int = 100, **config: Any) -> None:
        self.rows = [{"id": i, "amount": round(i * 0.37 % 50, 2)} for i in range(1, rows + 1)]
        self.reset(per_page=per_page, **config)
        self.app = self._build()

    def reset(
        self,
        *,
        per_page: int = 100,
        fail_every: int = 0,
        status: int = 500,
        retry_after: str | None = None,
        delay: float = 0.0,
        max_per_page: int | None = None,
        ignore_paging: bool = False,
        rows: int | None = None,
    ) -> None:
        if rows is not None:
            self.rows = [{"id": i, "amount": round(i * 0.37 % 50, 2)} for i in range(1, rows + 1)]
        self.per_page, self.fail_every, self.status = per_page, fail_every, status
        self.retry_after, self.delay, self.max_per_page = retry_after, delay, max_per_page
        self.ignore_paging = ignore_paging
        self.requests = self.failures = self.in_flight = self.max_in_flight = 0
        self.times: list[float] = []  # time.monotonic() at each request's arrival
        self.queries: list[dict[str, str]] = []  # the query of each /items request

    @property
    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failures": self.failures,
            "max_in_flight": self.max_in_flight,
            "times": list(self.times),
            "queries": [dict(q) for q in self.queries],
        }

    def _build(self) -> Starlette:
        async def items(request: Request) -> Response:
            self.requests += 1
            number = self.requests
            self.times.append(time.monotonic())
            self.queries.append(dict(request.query_params))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.delay:
                    await asyncio.sleep(self.delay)
                if self.fail_every and number % self.fail_every == 0:
                    self.failures += 1
                    headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                    return PlainTextResponse(f"failure #{self.failures}", self.status, headers)
                start, size = self._window(request)
                chunk = self.rows[start : start + size]
                return JSONResponse({"data": chunk, "total": len(self.rows)})
            finally:
                self.in_flight -= 1

        async def stats(request: Request) -> Response:
            return JSONResponse(self.stats)

        return Starlette(routes=[Route("/items", items), Route("/stats", stats)])

    def _window(self, request: Any) -> tuple[int, int]:
        query = request.query_params
        by_offset = "offset" in query or "limit" in query
        size = int(query.get("limit" if by_offset else "per_page", self.per_page))
        if self.max_per_page is not None:
            size = min(size, self.max_per_page)
        if self.ignore_paging:
            return 0, size
        start = int(query.get("offset", 0)) if by_offset else (int(query.get("page", 1)) - 1) * size
        return start, size


def flaky_app(
    rows: int = 1000,
    per_page: int = 100,
    *,
    fail_every: int = 0,
    status: int = 500,
    retry_after: str | None = None,
    **config: Any,
) -> Starlette:
    """A `FlakyAPI`'s app; the API object (stats, reset) is `app.state.api`."""
    api = FlakyAPI(
        rows, per_page, fail_every=fail_every, status=status, retry_after=retry_after, **config
    )
    api.app.state.api = api
    return api.app


class CountingApp:
    """ASGI wrapper that records every HTTP request (`path?query`) it passes to `app`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode()
            self.seen.append(scope["path"] + (f"?{query}" if query else ""))
        await self.app(scope, receive, send)


def oauth_app(rows: int = 300, per_page: int = 100, *, revoke_after: int = 2) -> Starlette:
    """Client-credentials token server and an API in one app: `POST /token` hands out
    `tok-1`, `tok-2`, ...; `GET /items?page=N` accepts only the newest token, and revokes it
    (answers 401) once it has served `revoke_after` requests. `app.state.counts` holds the
    tokens `issued` and the `unauthorized` answers."""
    data = [{"id": i} for i in range(1, rows + 1)]
    state = {"issued": 0, "served": 0, "unauthorized": 0}

    async def token(request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        state["issued"] += 1
        state["served"] = 0
        return JSONResponse({"access_token": f"tok-{state['issued']}", "expires_in": 3600})

    async def items(request: Request) -> Response:
        current = f"Bearer tok-{state['issued']}"
        if request.headers.get("authorization") != current or state["served"] >= revoke_after:
            state["unauthorized"] += 1
            return JSONResponse({"error": "invalid_token"}, 401)
        state["served"] += 1
        page = int(request.query_params.get("page", 1))
        return JSONResponse({"data": data[(page - 1) * per_page : page * per_page]})

    app = Starlette(routes=[Route("/token", token, methods=["POST"]), Route("/items", items)])
    app.state.counts = state
    return app


class Receiver:
    """`POST /hook/{secret}`: answers `fail_first` times with `status`, then 204; keeps bodies."""

    def __init__(self, fail_first: int = 0, status: int = 503) -> None:
        self.fail_first, self.status = fail_first, status
        self.tries = 0
        self.bodies: list[Any] = []

    async def hook(self, request: Request) -> Response:
        self.tries += 1
        if self.tries <= self.fail_first:
            return JSONResponse({"detail": "not now"}, status_code=self.status)
        self.bodies.append(await request.json())
        return Response(status_code=204)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook/{secret}", self.hook, methods=["POST"])])
