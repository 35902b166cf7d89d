"""The Gradio UI over a stand-in of the API (ui/api.py's UiApi), served on 127.0.0.1 for
gradio_client: what the UI tests of tabs share."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
from starlette.responses import PlainTextResponse

from tests.kit.servers import serve_app


class StartedOnce:
    """ASGI wrapper that enters the app's lifespan (Gradio starts its queue there) on the first
    request and leaves it on `/__stop__`: serve_app's server runs with lifespan off."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.stack = contextlib.AsyncExitStack()
        self.started = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/__stop__":
            await self.stack.aclose()
            await PlainTextResponse("stopped")(scope, receive, send)
            return
        if not self.started:
            self.started = True  # no await before this line: one request starts it
            await self.stack.enter_async_context(self.app.router.lifespan_context(self.app))
        await self.app(scope, receive, send)


@contextlib.contextmanager
def ui_over(api: Any) -> Iterator[Any]:
    """The UI built on `api`, served; yields a gradio_client Client of it."""
    import gradio as gr
    from fastapi import FastAPI
    from gradio_client import Client

    from ui.app import build_ui

    app = StartedOnce(gr.mount_gradio_app(FastAPI(), build_ui(api), path="/"))
    with serve_app(app) as url:
        yield Client(url, verbose=False)
        httpx.get(f"{url}/__stop__", timeout=10)
