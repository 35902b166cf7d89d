"""Real HTTP for tests: an ASGI app served by uvicorn on 127.0.0.1, in a background thread.

    with serve_app(app) as base_url:          # "http://127.0.0.1:<free port>"
        httpx.get(f"{base_url}/health")

The `demo_server` fixture lives here (tests/conftest.py is the Ray session's): use it with
`from tests.servers import demo_server  # noqa: F401`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount

from serve.demo import build_demo_app

DEMO_ROWS = 10_000


@contextmanager
def serve_app(app: Any, *, ready_timeout: float = 15.0, **config: Any) -> Iterator[str]:
    """Serve `app` while the block runs; yields its base URL. Extra kwargs go to uvicorn.Config."""
    # bind first and hand uvicorn the socket: the port is ours before the thread starts,
    # so there is no window in which another test could take it
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {
        "log_level": "warning",
        "log_config": None,  # leave the test run's logging alone
        "timeout_graceful_shutdown": 5,
        **config,
    }
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **options))
    # uvicorn installs signal handlers only in the main thread: none here, Ctrl+C stays pytest's
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + ready_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"uvicorn on port {port} stopped before it was ready")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn on port {port} not ready after {ready_timeout:g}s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


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
    import asyncio

    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

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
