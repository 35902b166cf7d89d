"""oauth2 beyond the basics, against a real token server on 127.0.0.1: client_auth basic vs
post, audience and extra parameters, the refresh-token grant with rotation; and secrets
embedded in a longer string (`"Token ${SHOP_TOKEN}"`) for api_key and bearer."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.kit.servers import serve_app
from tg_actors.attempts import Begin, Begun
from tg_actors.errors import JobValidationError, SourceError
from tg_actors.jobs import HttpSource, parse_job
from tg_actors.sources.http import HttpSourceClient
from tg_actors.sources.requester import TokenCache
from tg_actors.store.duckdb import DuckStore
from tg_actors.store.readonly import lock_down, open_read

CLIENT_ID, CLIENT_SECRET = "client-1", "cl13nt-s3cr3t"
REFRESH = "refresh-tok-0"
SHOP_TOKEN = "shop-t0ken-value"
ENV = {
    "SHOP_CLIENT_ID": CLIENT_ID,
    "SHOP_SECRET": CLIENT_SECRET,
    "SHOP_REFRESH_TOKEN": REFRESH,
    "SHOP_TOKEN": SHOP_TOKEN,
}


def token_app(
    rows: int = 30, per_page: int = 10, *, revoke_after: int = 1000, rotate: bool = False
) -> Starlette:
    """`POST /token` keeps each request's form and Authorization header (`app.state.seen`)
    and hands out `acc-1`, `acc-2`, ...; for grant_type=refresh_token it accepts only the
    newest refresh token and, with `rotate`, answers a new one each time. `GET /items?page=N`
    accepts the newest access token for `revoke_after` requests, echoing what it was sent."""
    data = [{"id": i} for i in range(1, rows + 1)]
    seen: dict[str, Any] = {"requests": [], "issued": 0, "served": 0, "unauthorized": 0}
    refresh = [REFRESH]

    async def token(request: Request) -> Response:
        form = dict(await request.form())
        seen["requests"].append((form, request.headers.get("authorization")))
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") != refresh[-1]:
                return JSONResponse({"error": "invalid_grant"}, 400)
        elif form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        seen["issued"] += 1
        seen["served"] = 0
        answer = {"access_token": f"acc-{seen['issued']}", "expires_in": 3600}
        if rotate and form.get("grant_type") == "refresh_token":
            refresh.append(f"refresh-tok-{seen['issued']}")
            answer["refresh_token"] = refresh[-1]
        return JSONResponse(answer)

    async def items(request: Request) -> Response:
        sent = request.headers.get("authorization", "")
        if sent != f"Bearer acc-{seen['issued']}" or seen["served"] >= revoke_after:
            seen["unauthorized"] += 1
            return JSONResponse({"error": "invalid_token"}, 401)
        seen["served"] += 1
        page = int(request.query_params.get("page", 1))
        chunk = data[(page - 1) * per_page : page * per_page]
        # a leaky API: echoes the refresh tokens it knows of
        return JSONResponse({"data": [{**r, "echo": " ".join(refresh)} for r in chunk]})

    app = Starlette(routes=[Route("/token", token, methods=["POST"]), Route("/items", items)])
    app.state.seen = seen
    return app


def spec(base_url: str, auth: dict[str, Any], **fields: Any) -> HttpSource:
    return HttpSource.model_validate(
        {
            "url": f"{base_url}/items",
            "auth": auth,
            "records": "$.data",
            "paginate": {"type": "page", "size": 10},
            **fields,
        }
    )


def credentials(base_url: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "oauth2_client_credentials",
        "token_url": f"{base_url}/token",
        "client_id": "${SHOP_CLIENT_ID}",
        "client_secret": "${SHOP_SECRET}",
        **fields,
    }


async def read(client: HttpSourceClient) -> list[Any]:
    return [page async for page in client.pages()]


BASIC = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()


@pytest.mark.parametrize("client_auth", [None, "basic", "post"])
async def test_client_auth_basic_or_post_as_the_token_server_sees_it(
    client_auth: str | None,
) -> None:
    app = token_app(rows=5)
    fields = {} if client_auth is None else {"client_auth": client_auth}
    with serve_app(app) as base_url:
        await read(HttpSourceClient(spec(base_url, credentials(base_url, **fields)), env=ENV))
    ((form, authorization),) = app.state.seen["requests"]
    if client_auth == "post":
        assert authorization is None
        assert form == {
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
    else:  # basic: what it always did
        assert authorization == BASIC
        assert form == {"grant_type": "client_credentials"}


async def test_audience_and_extra_parameters_are_sent_and_cannot_override_the_grant() -> None:
    app = token_app(rows=5)
    with serve_app(app) as base_url:
        auth = credentials(
            base_url,
            scope="orders:read",
            audience="https://api.shop.test",
            extra={"resource": "orders", "grant_type": "password"},
        )
        await read(HttpSourceClient(spec(base_url, auth), env=ENV))
    ((form, _),) = app.state.seen["requests"]
    assert form == {
        "grant_type": "client_credentials",
        "scope": "orders:read",
        "audience": "https://api.shop.test",
        "resource": "orders",
    }


def refresh_auth(base_url: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "oauth2_refresh_token",
        "token_url": f"{base_url}/token",
        "client_id": "${SHOP_CLIENT_ID}",
        "client_secret": "${SHOP_SECRET}",
        "refresh_token": "${SHOP_REFRESH_TOKEN}",
        "scope": "orders:read",
        **fields,
    }


async def test_refresh_token_grant_uses_the_rotated_refresh_token_for_each_renewal() -> None:
    app = token_app(rows=30, per_page=10, revoke_after=1, rotate=True)
    with serve_app(app) as base_url:
        client = HttpSourceClient(spec(base_url, refresh_auth(base_url)), env=ENV)
        pages = await read(client)
    records = [r for page in pages for r in page.records]
    assert [r["id"] for r in records] == list(range(1, 31))
    sent = [form["refresh_token"] for form, _ in app.state.seen["requests"]]
    # one page per access token: 4 pages (the last empty), each renewal with the newest one
    assert sent == ["refresh-tok-0", "refresh-tok-1", "refresh-tok-2", "refresh-tok-3"]
    form, authorization = app.state.seen["requests"][0]
    assert form == {"grant_type": "refresh_token", "refresh_token": REFRESH, "scope": "orders:read"}
    assert authorization == BASIC
    # the refresh tokens (configured and rotated) are secrets of the run: never in records
    # or checkpoints
    text = json.dumps([records, [p.checkpoint for p in pages]])
    assert "refresh-tok" not in text and "acc-" not in text


async def test_refresh_token_grant_without_rotation_keeps_the_configured_token() -> None:
    app = token_app(rows=30, per_page=10, revoke_after=2)
    with serve_app(app) as base_url:
        auth = refresh_auth(base_url, client_auth="post", scope=None)
        pages = await read(HttpSourceClient(spec(base_url, auth), env=ENV))
    assert sum(len(p.records) for p in pages) == 30
    forms = [form for form, _ in app.state.seen["requests"]]
    assert len(forms) == 2 and {f["refresh_token"] for f in forms} == {REFRESH}
    assert forms[0] == {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }


async def test_a_refused_refresh_token_fails_the_run_masked() -> None:
    app = token_app()
    with serve_app(app) as base_url:
        env = {**ENV, "SHOP_REFRESH_TOKEN": "stale-refresh-token"}
        with pytest.raises(SourceError) as caught:
            await read(HttpSourceClient(spec(base_url, refresh_auth(base_url)), env=env))
    assert caught.value.status == 400 and f"{base_url}/token" in str(caught.value)
    assert "stale-refresh-token" not in str(caught.value)


def echo_app() -> Starlette:
    """`GET /items`: 200 with the credentials it was sent, or 403 echoing them (`?fail=1`)."""

    async def items(request: Request) -> Response:
        sent = {
            "authorization": request.headers.get("authorization"),
            "x-api-key": request.headers.get("x-api-key"),
            "key": request.query_params.get("key"),
        }
        app.state.sent.append(sent)
        if request.query_params.get("fail"):
            return JSONResponse({"error": f"refused {sent}"}, 403)
        return JSONResponse({"data": [sent]})

    app = Starlette(routes=[Route("/items", items)])
    app.state.sent = []
    return app


@pytest.mark.parametrize(
    ("auth", "where", "masked"),
    [
        ({"type": "bearer", "token": "Token ${SHOP_TOKEN}"}, "authorization", "Bearer ***"),
        (
            {"type": "api_key", "name": "X-Api-Key", "value": "Token ${SHOP_TOKEN}"},
            "x-api-key",
            "***",
        ),
        (
            {"type": "api_key", "name": "key", "value": "k-${SHOP_TOKEN}", "in": "query"},
            "key",
            "***",
        ),
    ],
)
async def test_a_secret_embedded_in_a_longer_string_is_resolved_and_masked(
    auth: dict[str, Any], where: str, masked: str
) -> None:
    app = echo_app()
    with serve_app(app) as base_url:
        source = HttpSource.model_validate(
            {"url": f"{base_url}/items", "auth": auth, "records": "$.data"}
        )
        pages = await read(HttpSourceClient(source, env=ENV))
        failing = HttpSource.model_validate(
            {"url": f"{base_url}/items", "params": {"fail": 1}, "auth": auth, "max_tries": 1}
        )
        with pytest.raises(SourceError) as caught:
            await read(HttpSourceClient(failing, env=ENV))
    # the API got the whole string with the secret in place; the record keeps it masked
    ((record,),) = [p.records for p in pages]
    assert record[where] == masked
    sent = app.state.sent[0][where]
    given = auth.get("token", auth.get("value", ""))
    assert sent == masked.replace("***", given.replace("${SHOP_TOKEN}", SHOP_TOKEN))
    assert SHOP_TOKEN not in str(caught.value) and "***" in str(caught.value)
    parsed = parse_job(job(auth))
    public = json.dumps(parsed.to_public())
    assert "SHOP_TOKEN" not in public and SHOP_TOKEN not in public
    assert SHOP_TOKEN not in repr(parsed)


def job(auth: dict[str, Any]) -> dict[str, Any]:
    source = {"url": "https://x.test", "auth": auth}
    return {"name": "shop", "source": source, "destination": {"table": "t"}}


def errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(JobValidationError) as caught:
        parse_job(data)
    return list(caught.value.errors)


def test_refresh_token_auth_validation_by_field_path() -> None:
    auth = refresh_auth("https://x.test")
    del auth["refresh_token"]
    assert errors(job(auth)) == [("source.auth.refresh_token", "Field required")]
    ((where, _),) = errors(job({**refresh_auth("https://x.test"), "client_auth": "header"}))
    assert where == "source.auth.client_auth"
    parsed = parse_job(job({**refresh_auth("https://x.test"), "client_secret": None}))
    assert parsed.to_public()["source"]["auth"]["refresh_token"] == "***"


def test_client_credentials_new_fields_validation_by_field_path() -> None:
    auth = credentials("https://x.test")
    assert parse_job(job(auth)).source.auth.client_auth == "basic"  # type: ignore[union-attr]
    ((where, _),) = errors(job({**auth, "client_auth": "jwt"}))
    assert where == "source.auth.client_auth"
    ((where, _),) = errors(job({**auth, "extra": {"resource": 1}}))
    assert where == "source.auth.extra.resource"
    ((where, msg),) = errors(job({**auth, "audiences": "x"}))
    assert (where, msg) == ("source.auth.audiences", "unknown field")
    masked = parse_job(job({**auth, "extra": {"assertion": "${SHOP_TOKEN}"}})).to_public()
    assert masked["source"]["auth"]["extra"] == {"assertion": "***"}


async def test_a_rotated_refresh_token_is_kept_for_the_next_run_and_never_readable(
    tmp_path: Path,
) -> None:
    """The server accepts only its newest refresh token: run 2 must start from the one run 1
    rotated to, kept in tg.state the moment it was answered (the engine's on_rotate), while
    no query over tg.state shows it; a job that names a new refresh token of its own starts
    from that one instead."""
    app = token_app(rows=20, per_page=10, revoke_after=1000, rotate=True)
    with DuckStore(tmp_path / "t.duckdb") as store, serve_app(app) as base_url:
        source = spec(base_url, refresh_auth(base_url))

        async def one_run() -> list[Any]:
            run_id = store.create_run("shop", datetime.now(UTC), "manual")
            assert run_id is not None
            begin = Begin(run_id, job="shop", refresh_token=True)
            (begun,) = store.begin_attempts([begin], "engine-1")
            assert isinstance(begun, Begun)

            async def keep(token: str, origin: str) -> None:
                store.save_refresh_token("shop", token, origin)

            tokens = TokenCache(time.monotonic, stored_refresh=begun.refresh_token, on_rotate=keep)
            client = HttpSourceClient(source, env=ENV, tokens=tokens)
            return await read(client)

        assert len([r for p in await one_run() for r in p.records]) == 20
        assert len([r for p in await one_run() for r in p.records]) == 20  # from the kept one
        sent = [form["refresh_token"] for form, _ in app.state.seen["requests"]]
        assert sent == [REFRESH, "refresh-tok-1"]
        lock_down(store.con)
        cursor, _ = open_read(store.con)
        try:
            columns = [c[0] for c in cursor.execute("DESCRIBE tg.state").fetchall()]
            rows = cursor.execute("SELECT * FROM tg.state").fetchall()
        finally:
            cursor.close()
        assert "refresh_token" not in columns and "refresh-tok" not in repr(rows)
        shown = Begun(None, None, datetime.now(UTC), refresh_token=("refresh-tok-9", "o"))
        assert "refresh-tok" not in repr(shown)  # a Begun in a log line shows no token
