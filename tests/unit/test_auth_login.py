"""`auth: {type: login}` against a real login endpoint on 127.0.0.1: the token is read at
token_path, sent as `header: prefix + token`, cached, renewed before expiry and once on a
401, and never shown (errors, records, checkpoints, to_public)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.kit.servers import serve_app
from tg_actors.config.files import load_job_file
from tg_actors.errors import JobValidationError, SourceError
from tg_actors.jobs import HttpSource, parse_job
from tg_actors.sources.http import HttpSourceClient

USER, PASSWORD = "alice", "hunter2-pa55word"
ENV = {"SHOP_USER": USER, "SHOP_PASSWORD": PASSWORD}
EXAMPLE = Path(__file__).parents[2] / "configs" / "examples" / "auth" / "login.yaml"


def login_app(
    rows: int = 50,
    per_page: int = 10,
    *,
    revoke_after: int = 1000,
    expires_in: float | None = None,
    header: str = "authorization",
    prefix: str = "Bearer ",
    refuse_all: bool = False,
) -> Starlette:
    """`POST /login` (JSON or form `{user, password}`) answers `{"auth": {"token": ...}}`
    with tokens `login-tok-1`, `login-tok-2`, ...; `GET /items?page=N` accepts only the newest
    token and revokes it (401) after `revoke_after` requests: tokens expire by request count.
    Each record echoes the credential it was sent (a leaky API). `app.state.seen` keeps the
    logins' content types and bodies, and the counts."""
    data = [{"id": i} for i in range(1, rows + 1)]
    seen: dict[str, Any] = {"logins": [], "issued": 0, "served": 0, "unauthorized": 0}

    async def login(request: Request) -> Response:
        kind = request.headers.get("content-type", "")
        if kind.startswith("application/json"):
            given = dict(await request.json())
        else:
            given = dict(await request.form())
        seen["logins"].append((kind, given))
        if given.get("user") != USER or given.get("password") != PASSWORD:
            return JSONResponse({"error": f"bad password {given.get('password')}"}, 403)
        seen["issued"] += 1
        seen["served"] = 0
        answer: dict[str, Any] = {"auth": {"token": f"login-tok-{seen['issued']}"}}
        if expires_in is not None:
            answer["expires_in"] = expires_in
        return JSONResponse(answer)

    async def items(request: Request) -> Response:
        sent = request.headers.get(header, "")
        if (
            refuse_all
            or sent != f"{prefix}login-tok-{seen['issued']}"
            or (seen["served"] >= revoke_after)
        ):
            seen["unauthorized"] += 1
            return JSONResponse({"error": f"token {sent} is not valid"}, 401)
        seen["served"] += 1
        page = int(request.query_params.get("page", 1))
        chunk = data[(page - 1) * per_page : page * per_page]
        return JSONResponse({"data": [{**row, "echo": sent} for row in chunk]})

    app = Starlette(routes=[Route("/login", login, methods=["POST"]), Route("/items", items)])
    app.state.seen = seen
    return app


def login_auth(base_url: str, **fields: Any) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "login",
        "url": f"{base_url}/login",
        "body": {"user": "${SHOP_USER}", "password": "${SHOP_PASSWORD}"},
        "token_path": "$.auth.token",
    }
    return {**auth, **fields}


def spec(base_url: str, auth: dict[str, Any]) -> HttpSource:
    return HttpSource.model_validate(
        {
            "url": f"{base_url}/items",
            "auth": auth,
            "records": "$.data",
            "paginate": {"type": "page", "size": 10},
        }
    )


async def read(client: HttpSourceClient) -> list[Any]:
    return [page async for page in client.pages()]


def _text(value: Any) -> str:
    return json.dumps(value, default=str)


async def test_json_login_token_is_sent_and_renewed_once_on_each_401() -> None:
    app = login_app(rows=50, per_page=10, revoke_after=2)
    with serve_app(app) as base_url:
        client = HttpSourceClient(spec(base_url, login_auth(base_url)), env=ENV)
        pages = await read(client)
    records = [r for page in pages for r in page.records]
    assert [r["id"] for r in records] == list(range(1, 51))
    seen = app.state.seen
    # pages 1-2 with tok-1, 401, 3-4 with tok-2, 401, 5-6 (6 empty: the end) with tok-3
    assert seen["issued"] == 3 and seen["unauthorized"] == 2
    kind, body = seen["logins"][0]
    assert kind.startswith("application/json") and body == {"user": USER, "password": PASSWORD}
    # the token is a secret of the run: scrubbed from the records that echo it, never checkpointed
    assert {r["echo"] for r in records} == {"Bearer ***"}
    assert "login-tok" not in _text([p.checkpoint for p in pages])
    assert PASSWORD not in _text([p.checkpoint for p in pages])


async def test_form_login_with_a_custom_header_and_prefix() -> None:
    app = login_app(rows=5, per_page=10, header="x-session", prefix="Token ")
    with serve_app(app) as base_url:
        auth = login_auth(
            base_url,
            body=None,
            form={"user": "${SHOP_USER}", "password": "${SHOP_PASSWORD}"},
            header="X-Session",
            prefix="Token ",
        )
        pages = await read(HttpSourceClient(spec(base_url, auth), env=ENV))
    assert [r["id"] for p in pages for r in p.records] == [1, 2, 3, 4, 5]
    (kind, body), *_ = app.state.seen["logins"]
    assert kind.startswith("application/x-www-form-urlencoded")
    assert body == {"user": USER, "password": PASSWORD}
    assert app.state.seen["unauthorized"] == 0


async def test_the_token_is_cached_and_renewed_shortly_before_the_answers_expires_in() -> None:
    now = [1000.0]
    app = login_app(rows=5, expires_in=100)
    with serve_app(app) as base_url:
        client = HttpSourceClient(
            spec(base_url, login_auth(base_url)), env=ENV, clock=lambda: now[0]
        )
        await read(client)
        now[0] += 85  # still valid (renewal from 90 s on): the next run reuses it
        await read(client)
        assert app.state.seen["issued"] == 1
        now[0] += 6  # inside the renewal margin: a new login before the first request
        await read(client)
    assert app.state.seen["issued"] == 2
    assert app.state.seen["unauthorized"] == 0  # renewed before it lapsed, never on a 401


async def test_a_configured_expires_in_wins_over_the_answer() -> None:
    now = [1000.0]
    app = login_app(rows=5, expires_in=3600)
    with serve_app(app) as base_url:
        auth = login_auth(base_url, expires_in="30s")
        client = HttpSourceClient(spec(base_url, auth), env=ENV, clock=lambda: now[0])
        await read(client)
        now[0] += 28  # past 30 s less the 10 % margin
        await read(client)
    assert app.state.seen["issued"] == 2 and app.state.seen["unauthorized"] == 0


async def test_without_expires_in_the_token_lasts_until_a_401() -> None:
    now = [1000.0]
    app = login_app(rows=5)
    with serve_app(app) as base_url:
        client = HttpSourceClient(
            spec(base_url, login_auth(base_url)), env=ENV, clock=lambda: now[0]
        )
        await read(client)
        now[0] += 10 * 365 * 86400
        await read(client)
    assert app.state.seen["issued"] == 1


async def test_a_second_401_fails_naming_the_login_url_with_secrets_masked() -> None:
    app = login_app(refuse_all=True)
    with serve_app(app) as base_url:
        client = HttpSourceClient(spec(base_url, login_auth(base_url)), env=ENV)
        with pytest.raises(SourceError) as caught:
            await read(client)
    message = str(caught.value)
    assert caught.value.status == 401
    assert f"{base_url}/login" in message and "refused too" in message
    assert "login-tok" not in message and PASSWORD not in message
    assert "Bearer ***" in message  # the API's echo of the token, masked
    assert app.state.seen["issued"] == 2  # renewed once, then the run fails


async def test_a_refused_login_names_its_url_and_masks_the_password() -> None:
    app = login_app()
    with serve_app(app) as base_url:
        client = HttpSourceClient(
            spec(base_url, login_auth(base_url)),
            env={**ENV, "SHOP_PASSWORD": "wrong-password-1"},
        )
        with pytest.raises(SourceError) as caught:
            await read(client)
    message = str(caught.value)
    assert caught.value.status == 403 and f"POST {base_url}/login" in message
    assert "wrong-password-1" not in message and "bad password ***" in message


async def test_a_login_answer_without_the_token_fails_naming_token_path() -> None:
    app = login_app()
    with serve_app(app) as base_url:
        auth = login_auth(base_url, token_path="$.nowhere.token")
        with pytest.raises(SourceError, match=r"no token at \$\.nowhere\.token"):
            await read(HttpSourceClient(spec(base_url, auth), env=ENV))


def job(auth: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "shop",
        "source": {"url": "https://x.test/items", "auth": auth},
        "destination": {"table": "items"},
    }


LOGIN = {
    "type": "login",
    "url": "https://x.test/login",
    "body": {"user": "${SHOP_USER}", "password": "${SHOP_PASSWORD}"},
    "token_path": "$.token",
}


def errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(JobValidationError) as caught:
        parse_job(data)
    return list(caught.value.errors)


def test_login_defaults_and_the_body_masked_in_to_public() -> None:
    spec = parse_job(job(LOGIN))
    auth = spec.source.auth
    assert (auth.method, auth.header, auth.prefix, auth.expires_in) == (  # type: ignore[union-attr]
        "POST",
        "Authorization",
        "Bearer ",
        None,
    )
    public = spec.to_public()["source"]["auth"]
    assert public["body"] == {"user": "***", "password": "***"}
    assert spec.to_stored()["source"]["auth"]["body"]["password"] == "${SHOP_PASSWORD}"
    assert "${SHOP_PASSWORD}" not in repr(spec)


def test_login_without_token_path_is_refused_by_field_path() -> None:
    auth = {k: v for k, v in LOGIN.items() if k != "token_path"}
    assert errors(job(auth)) == [("source.auth.token_path", "Field required")]


def test_login_with_both_body_and_form_is_refused_at_source_auth() -> None:
    (error,) = errors(job({**LOGIN, "form": {"user": "u"}}))
    assert error[0] == "source.auth" and "not both" in error[1]


def test_login_refuses_a_bad_token_path_and_an_unknown_field() -> None:
    assert errors(job({**LOGIN, "token_path": "$.[["}))[0][0] == "source.auth.token_path"
    assert errors(job({**LOGIN, "tokenpath": "$.t"}))[0] == (
        "source.auth.tokenpath",
        "unknown field",
    )


def test_the_login_example_loads() -> None:
    spec = load_job_file(EXAMPLE)
    assert spec.source.auth.type == "login"
