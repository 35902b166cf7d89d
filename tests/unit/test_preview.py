"""The test read (engine/preview.py) against a real HTTP server on 127.0.0.1: every
paginator kind reports why it stopped (or the request a full read sends next), secrets are
masked in URLs, headers and bodies, and the warnings a user needs come with the answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.kit.servers import serve_app
from tg_actors.engine.preview import Known, preview_job
from tg_actors.jobs import JobSpec, parse_job

ITEMS = [
    {"id": i, "name": f"item {i}", "updated": f"2024-01-{i:02d}T00:00:00Z"} for i in range(1, 24)
]
SIZE = 5
SECRET = "s3cr3t-token-value"
CALLS: list[str] = []


def _page(request: Request) -> list[dict[str, Any]]:
    page = int(request.query_params.get("page", 1))
    return ITEMS[(page - 1) * SIZE : page * SIZE]


async def paged(request: Request) -> Response:
    CALLS.append(str(request.url))
    if request.headers.get("authorization", f"Bearer {SECRET}") != f"Bearer {SECRET}":
        return JSONResponse({"error": "bad token"}, 401)
    return JSONResponse({"data": _page(request), "total": len(ITEMS)})


async def offset(request: Request) -> Response:
    start = int(request.query_params.get("offset", 0))
    limit = int(request.query_params.get("limit", SIZE))
    return JSONResponse({"data": ITEMS[start : start + limit]})


async def cursor(request: Request) -> Response:
    after = int(request.query_params.get("cursor", 0))
    chunk = [i for i in ITEMS if i["id"] > after][:SIZE]
    nxt = chunk[-1]["id"] if chunk and chunk[-1]["id"] < ITEMS[-1]["id"] else None
    return JSONResponse({"data": chunk, "next_cursor": nxt})


async def linked(request: Request) -> Response:
    page = int(request.query_params.get("page", 1))
    headers = {}
    if page * SIZE < len(ITEMS):
        headers["Link"] = f'</linked?page={page + 1}>; rel="next"'
    return JSONResponse(_page(request), headers=headers | {"X-Total-Count": "99"})


async def next_url(request: Request) -> Response:
    page = int(request.query_params.get("page", 1))
    nxt = f"/next?page={page + 1}&api_key={SECRET}" if page * SIZE < len(ITEMS) else None
    return JSONResponse({"data": _page(request), "next": nxt})


async def same(request: Request) -> Response:
    return JSONResponse({"data": ITEMS[:SIZE], "next": "/same?n=2"})


async def html(request: Request) -> Response:
    return PlainTextResponse(f"<html>maintenance {SECRET}</html>", media_type="text/html")


async def wrong_path(request: Request) -> Response:
    return JSONResponse({"items": ITEMS[:2]})


async def token(request: Request) -> Response:
    return JSONResponse({"access_token": SECRET, "expires_in": 3600})


async def per_customer(request: Request) -> Response:
    cid = int(request.path_params["cid"])
    return JSONResponse({"data": [{"order": cid * 10 + k} for k in range(3)]})


async def slow(request: Request) -> Response:
    await asyncio.sleep(2)
    return JSONResponse({"data": []})


async def single(request: Request) -> Response:
    return JSONResponse({"data": {"id": 1, "echo": request.headers.get("x-api-key")}})


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/paged", paged),
            Route("/offset", offset),
            Route("/cursor", cursor),
            Route("/linked", linked),
            Route("/next", next_url),
            Route("/same", same),
            Route("/html", html),
            Route("/wrong", wrong_path),
            Route("/token", token, methods=["POST"]),
            Route("/customers/{cid}/orders", per_customer),
            Route("/single", single),
            Route("/slow", slow),
        ]
    )
    with serve_app(app) as url:
        yield url


def job(base: str, path: str, **source: Any) -> JobSpec:
    return parse_job(
        {
            "name": "trial",
            "source": {"url": f"{base}{path}", "records": "$.data", **source},
            "destination": {"table": "trial"},
        }
    )


ENV = {"API_TOKEN": SECRET}


async def test_page_pagination_stops_at_the_preview_limit_and_names_the_next_request(
    base: str,
) -> None:
    spec = job(base, "/paged", paginate={"type": "page", "size": SIZE, "size_param": "size"})
    answer = await preview_job(spec, pages=2, records=3)
    assert answer["pages_read"] == 2 and answer["records"] == 10
    assert [p["records"] for p in answer["pages"]] == [5, 5]
    assert answer["stop"]["reason"] == "page_limit"
    assert answer["next_request"]["url"].endswith("/paged?page=3&size=5")
    assert [r["status"] for r in answer["requests"]] == [200, 200]
    assert answer["sample"]["raw"] == ITEMS[:3]
    types = {c["name"]: c["type"] for c in answer["columns"]}
    assert types == {"id": "BIGINT", "name": "VARCHAR", "updated": "VARCHAR"}
    assert answer["error"] is None and answer["warnings"] == []


@pytest.mark.parametrize(
    ("path", "paginate", "reason"),
    [
        ("/paged", {"type": "page", "size": SIZE}, "short_page"),
        ("/paged", {"type": "page", "size": SIZE, "total_path": "$.total"}, "total_reached"),
        ("/offset", {"type": "offset", "limit": SIZE}, "short_page"),
        ("/cursor", {"type": "cursor", "path": "$.next_cursor"}, "no_next_cursor"),
        ("/next", {"type": "next_url", "path": "$.next"}, "no_next_link"),
        ("/paged", {"type": "none"}, "single_request"),
    ],
)
async def test_each_paginator_says_why_it_stopped(
    base: str, path: str, paginate: dict[str, Any], reason: str
) -> None:
    answer = await preview_job(job(base, path, paginate=paginate), pages=20)
    assert answer["stop"]["reason"] == reason, answer["stop"]
    assert answer["next_request"] is None
    if reason != "single_request":
        assert answer["records"] == len(ITEMS)


async def test_link_header_pagination_and_the_expect_total_it_would_fail(base: str) -> None:
    spec = job(
        base,
        "/linked",
        records="$",
        paginate={"type": "link_header"},
        expect_total={"header": "X-Total-Count"},
    )
    answer = await preview_job(spec, pages=20)
    assert answer["stop"]["reason"] == "no_next_link"
    assert answer["expect_total"] == {"reported": 99, "read": 23, "complete": True}
    assert any("reports 99 records" in w and "a run would fail" in w for w in answer["warnings"])


async def test_bearer_token_and_secret_in_a_next_link_are_masked(base: str) -> None:
    spec = job(
        base,
        "/next",
        auth={"type": "bearer", "token": "${API_TOKEN}"},
        paginate={"type": "next_url", "path": "$.next"},
    )
    answer = await preview_job(spec, pages=2, env=ENV)
    text = json.dumps(answer)
    assert SECRET not in text
    assert answer["requests"][0]["headers"]["authorization"] == "***"
    assert "api_key=***" in answer["requests"][1]["url"]
    assert "api_key=***" in answer["next_request"]["url"]


async def test_an_oauth2_token_request_is_shown_as_auth_and_masked(base: str) -> None:
    spec = job(
        base,
        "/paged",
        auth={
            "type": "oauth2_client_credentials",
            "token_url": f"{base}/token",
            "client_id": "me",
            "client_secret": "${CLIENT_SECRET}",
        },
    )
    answer = await preview_job(spec, env={"CLIENT_SECRET": "client-secret-1"})
    kinds = [(r["kind"], r["method"], r["status"]) for r in answer["requests"]]
    assert kinds == [("auth", "POST", 200), ("page", "GET", 200)]
    text = json.dumps(answer)
    assert SECRET not in text and "client-secret-1" not in text
    assert (
        answer["requests"][0]["excerpt"] is None or SECRET not in answer["requests"][0]["excerpt"]
    )


async def test_an_api_key_echoed_back_is_scrubbed_and_one_object_is_a_warning(base: str) -> None:
    spec = job(
        base, "/single", auth={"type": "api_key", "name": "X-API-Key", "value": "${API_TOKEN}"}
    )
    answer = await preview_job(spec, env=ENV)
    assert answer["requests"][0]["headers"]["x-api-key"] == "***"
    assert answer["sample"]["raw"] == [{"id": 1, "echo": "***"}]
    assert any("holds one object, not a list" in w for w in answer["warnings"])


async def test_a_records_path_that_matches_nothing_shows_the_body(base: str) -> None:
    answer = await preview_job(job(base, "/wrong"))
    assert answer["stop"]["reason"] == "error" and "records path" in answer["error"]
    assert any("matched nothing" in w for w in answer["warnings"])
    assert '"items"' in answer["requests"][0]["excerpt"]


async def test_a_body_that_is_not_json_is_an_error_with_its_excerpt_masked(base: str) -> None:
    spec = job(base, "/html", auth={"type": "bearer", "token": "${API_TOKEN}"})
    answer = await preview_job(spec, env=ENV)
    assert "not JSON" in answer["error"]
    request = answer["requests"][0]
    assert request["content_type"].startswith("text/html")
    assert "maintenance ***" in request["excerpt"] and SECRET not in json.dumps(answer)


async def test_identical_pages_are_the_loop_guard_with_a_warning(base: str) -> None:
    answer = await preview_job(job(base, "/same", paginate={"type": "next_url"}), pages=5)
    assert answer["stop"]["reason"] == "loop_guard"
    assert any("pages 1 and 2" in w for w in answer["warnings"])


async def test_transform_and_incremental_show_what_would_land(base: str) -> None:
    spec = job(
        base,
        "/paged",
        paginate={"type": "page", "size": SIZE},
        incremental={"cursor_field": "updated", "param": "since", "initial": "2024-01-01"},
    )
    spec = spec.model_copy(
        update={
            "transform": parse_job(
                {
                    "name": "t",
                    "source": {"url": base},
                    "destination": {"table": "t"},
                    "transform": {
                        "sql": "SELECT id * 2 AS twice, upper(name) AS name FROM records"
                    },
                }
            ).transform
        }
    )
    answer = await preview_job(spec, pages=1, records=2, known=Known(cursor="2024-01-03T00:00:00Z"))
    assert answer["sample"]["transformed"] == [
        {"twice": 2, "name": "ITEM 1"},
        {"twice": 4, "name": "ITEM 2"},
    ]
    assert [c["name"] for c in answer["columns"]] == ["twice", "name"]
    assert answer["cursor"]["param"] == "since"
    assert answer["cursor"]["sent"].startswith("2024-01-03")
    assert answer["cursor"]["newest"].startswith("2024-01-05")
    assert "since=2024-01-03" in answer["requests"][0]["url"]


async def test_for_each_reads_its_first_row_and_adds_the_included_columns(base: str) -> None:
    spec = job(
        base,
        "/customers/{customer_id}/orders",
        for_each={"sql": "SELECT id AS customer_id FROM customers", "include": ["customer_id"]},
    )
    answer = await preview_job(spec, known=Known(rows=[{"customer_id": 7}, {"customer_id": 8}]))
    assert answer["chain"]["row"] == {"customer_id": 7}
    assert answer["requests"][0]["url"].endswith("/customers/7/orders")
    assert answer["sample"]["raw"][0] == {"order": 70}
    assert {c["name"] for c in answer["columns"]} == {"order", "customer_id"}
    assert any("first row only" in w for w in answer["warnings"])


async def test_for_each_without_rows_reads_nothing_and_says_so(base: str) -> None:
    spec = job(base, "/customers/{customer_id}/orders", for_each={"sql": "SELECT 1 AS customer_id"})
    answer = await preview_job(spec, known=Known(rows=[]))
    assert answer["stop"]["reason"] == "no_rows" and answer["requests"] == []
    assert any("no rows" in w for w in answer["warnings"])


async def test_a_window_job_reads_its_first_window(base: str) -> None:
    spec = job(
        base,
        "/paged",
        params={"from": "{window_start}", "to": "{window_end}"},
        window={"start": "2024-01-01", "step": "7d", "end": "2024-03-01"},
    )
    answer = await preview_job(spec)
    assert answer["chain"]["window"]["start"].startswith("2024-01-01")
    assert answer["chain"]["window"]["end"].startswith("2024-01-08")
    assert "from=2024-01-01" in answer["requests"][0]["url"]


@pytest.mark.parametrize(
    ("path", "auth", "env"),
    [
        (
            "/offset",
            {"type": "basic", "username": "me", "password": "${API_PASSWORD}"},
            {"API_PASSWORD": "basic-pass-1"},
        ),
        (
            "/paged",
            {
                "type": "login",
                "url": "/token",
                "body": {"password": "${API_PASSWORD}"},
                "token_path": "$.access_token",
            },
            {"API_PASSWORD": "login-pass-1"},
        ),
        (
            "/paged",
            {
                "type": "oauth2_refresh_token",
                "token_url": "/token",
                "client_id": "me",
                "refresh_token": "${REFRESH_TOKEN}",
            },
            {"REFRESH_TOKEN": "refresh-tok-1"},
        ),
    ],
)
async def test_basic_login_and_refresh_token_auth_are_masked(
    base: str, path: str, auth: dict[str, Any], env: dict[str, str]
) -> None:
    for field in ("url", "token_url"):
        if field in auth:
            auth = auth | {field: f"{base}{auth[field]}"}
    answer = await preview_job(job(base, path, auth=auth), env=env)
    assert answer["error"] is None and answer["records"] == SIZE, answer
    text = json.dumps(answer)
    assert SECRET not in text and next(iter(env.values())) not in text
    assert answer["requests"][-1]["headers"]["authorization"] == "***"
    if auth["type"] != "basic":
        assert [r["kind"] for r in answer["requests"]] == ["auth", "page"]


async def test_a_slow_api_stops_at_the_time_limit_with_what_was_read(base: str) -> None:
    answer = await preview_job(job(base, "/slow"), time_limit=0.5)
    assert answer["stop"]["reason"] == "time_limit" and answer["error"] is None
    assert any("stopped after 0.5 s" in w for w in answer["warnings"])
