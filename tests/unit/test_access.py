"""The UI's sign-in (cookie, login form, ?token= link, bearer) and the body limit, on a tiny
ASGI app: no Ray, no Gradio."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serve.access import COOKIE, BodyLimit, UiAuth, session_value

TOKEN = "s3cret-token-0123"


async def echo(request: Request) -> PlainTextResponse:
    body = await request.body()
    return PlainTextResponse(f"{request.url.path} {len(body)}")


def client(limit: int = 1000) -> TestClient:
    app = Starlette(
        routes=[Route("/{path:path}", echo, methods=["GET", "POST", "PUT"])],
    )
    wrapped = BodyLimit(UiAuth(app, TOKEN), limit)
    return TestClient(wrapped, base_url="http://127.0.0.1", follow_redirects=False)


def test_a_browser_without_a_session_goes_to_the_login_page() -> None:
    c = client()
    r = c.get("/", headers={"Accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F"
    assert c.get("/gradio_api/info").status_code == 401  # a script gets 401, not a page
    page = c.get("/login?next=/runs")
    assert page.status_code == 200 and 'name="token"' in page.text and 'value="/runs"' in page.text
    assert TOKEN not in page.text


def test_login_form_sets_a_session_cookie_that_is_not_the_token() -> None:
    c = client()
    bad = c.post("/login", data={"token": "nope", "next": "/"})
    assert bad.status_code == 401 and COOKIE not in bad.cookies
    ok = c.post("/login", data={"token": TOKEN, "next": "/runs"})
    assert ok.status_code == 303 and ok.headers["location"] == "/runs"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    assert c.get("/anything").text == "/anything 0"  # the cookie jar now holds the session
    assert c.get("/logout").status_code == 303
    c.cookies.clear()
    assert c.get("/anything").status_code == 401


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "javascript:1"])
def test_login_never_redirects_off_site(target: str) -> None:
    ok = client().post("/login", data={"token": TOKEN, "next": target})
    assert ok.headers["location"] == "/"


def test_token_link_signs_in_and_drops_the_token_from_the_url() -> None:
    c = client()
    r = c.get(f"/?token={TOKEN}&tab=runs")
    assert r.status_code == 303 and r.headers["location"] == "/?tab=runs"
    assert c.cookies.get(COOKIE) == session_value(TOKEN)
    assert c.get("/").status_code == 200
    assert client().get("/?token=wrong", headers={"Accept": "text/html"}).status_code == 303


def test_bearer_header_and_open_paths() -> None:
    c = client()
    assert c.get("/config", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert c.get("/config", headers={"Authorization": "Bearer wrong"}).status_code == 401
    # the API checks its own token; the demo source is public sample data
    assert c.get("/api/jobs").status_code == 200
    assert c.get("/demo/orders").status_code == 200


def test_bodies_over_the_limit_get_413_before_the_app_sees_them() -> None:
    c = client(limit=1000)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert c.put("/api/jobs/x", content=b"x" * 1000).text == "/api/jobs/x 1000"
    big = c.put("/api/jobs/x", content=b"x" * 1001)
    assert big.status_code == 413 and "limit is 1000" in big.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
        for _ in range(20):
            yield b"y" * 100

    assert c.post("/api/jobs/x", content=chunks()).status_code == 413
    assert c.post("/ui", content=b"z" * 5000, headers=auth).status_code == 413
