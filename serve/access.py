"""Who may reach the app, and with how big a body: two pure-ASGI middlewares (pure ASGI so
the event stream is never buffered) and the UI's login page.

- `UiAuth`: the UI (everything outside /api, /metrics and /demo, which have their own rules)
  needs the token too: from a login form, from a `/?token=...` link that `tg up` prints (as
  Jupyter does), or as a bearer header (gradio_client). A browser keeps a session cookie
  derived from the token (never the token itself): HttpOnly, SameSite=Strict.
- `BodyLimit`: a request body over the limit gets 413 before the app sees any of it.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from serve.auth import token_matches

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "tg_session"
# these paths answer for themselves: the API and metrics check the bearer token, the demo
# source is public sample data, the login page is how one gets in
OPEN_PREFIXES = ("/api/", "/metrics", "/demo/", "/login", "/logout", "/favicon.ico")


def session_value(token: str) -> str:
    """What the cookie holds: a MAC of the token, so the cookie never carries the token."""
    return hmac.new(token.encode(), b"turbo-giggle ui session", hashlib.sha256).hexdigest()


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            out[name] = value
    return out


def signed_in(headers: dict[str, str], token: str) -> bool:
    """The UI's session cookie, or `Authorization: Bearer <token>` (lower-cased header names)."""
    cookie = _cookies(headers.get("cookie", "")).get(COOKIE)
    if cookie is not None and hmac.compare_digest(cookie.encode(), session_value(token).encode()):
        return token_matches(token, token)  # never for an empty or short token
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and token_matches(value.strip(), token)


def _safe_next(target: str | None) -> str:
    r"""Only a path of this site: a login link must not redirect to another one. Anything but
    printable ASCII is refused (browsers drop tabs and newlines, so `/\t/evil.example` would
    become `//evil.example`), and so are backslashes (`/\evil.example` is `//evil.example` to
    a browser), `//`, a scheme or a host; each falls back to "/"."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or not all("!" <= char <= "~" for char in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return "/"
    return target


async def _respond(
    send: Send, status: int, body: bytes, ctype: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _cookie_header(value: str, scope: Scope, max_age: int = 30 * 24 * 3600) -> bytes:
    secure = "; Secure" if scope.get("scheme") == "https" else ""
    return (
        f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}".encode()
    )


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>turbo-giggle: sign in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:12vh auto;padding:0 1rem}}
input,button{{font-size:1rem;padding:.5rem;width:100%;box-sizing:border-box;margin:.3rem 0}}
.error{{color:#b00020}}</style></head>
<body><h1>turbo-giggle</h1>
<p>Paste the API token: it is <code>TG_API_TOKEN</code>, or the one in
<code>data/api_token</code>; <code>tg up</code> also prints a link that signs you in.</p>
<form method="post" action="/login"><input type="hidden" name="next" value="{next}">
<input id="token" name="token" type="password" placeholder="API token" autofocus required>
<button id="sign-in" type="submit">Sign in</button></form>
<p class="error">{error}</p></body></html>
"""


class UiAuth:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token
        self._session = session_value(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in ("/login", "/logout") and scope["type"] == "http":
            await self._login(scope, receive, send)
            return
        if path.startswith(OPEN_PREFIXES) or path in ("/api", "/demo"):
            await self.app(scope, receive, send)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.pop("token", [None])[0]
        if given is not None and scope["type"] == "http":
            if token_matches(given, self._token):  # the link from `tg up`: keep a cookie
                rest = urlencode(query, doseq=True)
                location = path + (f"?{rest}" if rest else "")
                extra = [
                    (b"location", location.encode()),
                    (b"set-cookie", _cookie_header(self._session, scope)),
                ]
                await _respond(send, 303, b"", "text/plain", extra)
                return
        if self._allowed(scope):
            await self.app(scope, receive, send)
            return
        await self._refuse(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        return signed_in(_headers(scope), self._token)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 4401})
            return
        accepts_html = "text/html" in _headers(scope).get("accept", "")
        if scope["method"] == "GET" and accepts_html:  # a browser: to the login page
            target = scope["path"] + (
                "?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else ""
            )
            location = "/login?" + urlencode({"next": target})
            await _respond(send, 303, b"", "text/plain", [(b"location", location.encode())])
            return
        body = json.dumps({"detail": "sign in first: the UI needs the API token"}).encode()
        await _respond(send, 401, body, "application/json")

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope["path"] == "/logout":
            extra = [(b"location", b"/login"), (b"set-cookie", _cookie_header("", scope, 0))]
            await _respond(send, 303, b"", "text/plain", extra)
            return
        if scope["method"] == "GET":
            page = LOGIN_PAGE.format(
                next=html.escape(_safe_next(query.get("next", [""])[0])), error=""
            )
            await _respond(send, 200, page.encode(), "text/html; charset=utf-8")
            return
        form = parse_qs((await _read_body(receive, 64 * 1024)).decode("utf-8", "replace"))
        target = _safe_next(form.get("next", [""])[0])
        if token_matches(form.get("token", [""])[0].strip(), self._token):
            extra = [
                (b"location", target.encode()),
                (b"set-cookie", _cookie_header(self._session, scope)),
            ]
            await _respond(send, 303, b"", "text/plain", extra)
            return
        page = LOGIN_PAGE.format(next=html.escape(target), error="That token is not right.")
        await _respond(send, 401, page.encode(), "text/html; charset=utf-8")


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if len(body) > limit or not message.get("more_body"):
            return body[:limit]


class BodyLimit:
    """413 for a body over `limit` bytes: by its Content-Length at once, or while it streams
    in (chunked), before the app has seen any of it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = _headers(scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._too_large(send, int(length))
            return
        chunks: list[Message] = []
        size = 0
        while True:  # buffered up to the limit, then replayed to the app
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._too_large(send, size)
                return
            chunks.append(message)
            if not message.get("more_body"):
                break

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send, size: int) -> None:
        detail = f"request body too large: {size} bytes or more, the limit is {self.limit}"
        await _respond(send, 413, json.dumps({"detail": detail}).encode(), "application/json")
