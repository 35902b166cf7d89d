"""Issue 12, defects 16-20 (security), each on real parts and Ray-free: the token file, the
OpenAPI and docs behind the token, the login redirect, which `${NAME}`s a job may resolve,
secret values echoed into records, private targets, and the transform sandbox."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from serve.access import COOKIE, UiAuth, session_value
from serve.auth import ensure_token, token_matches
from tests.kit.servers import serve_app
from tg_actors.errors import SourceError, TransformError
from tg_actors.jobs import HttpSource
from tg_actors.redaction import DEFAULT_SECRET_ENV, SecretNames, SecretNotAllowed
from tg_actors.settings import MIN_TOKEN_CHARS, Settings
from tg_actors.sources.batches import records_to_arrow
from tg_actors.sources.http import BlockedTarget, HttpSourceClient, Page, TargetPolicy
from tg_actors.transform import TRANSFORM_MAX_OUTPUT_BYTES, apply_transform, transform_sql_problem

TOKEN = "a-long-enough-api-token"
SECRET = "echo-me-s3cr3t-value"
REPO = Path(__file__).resolve().parents[2]


def source(**fields: Any) -> HttpSource:
    return HttpSource.model_validate({"url": "http://api.test/orders", **fields})


async def read(client: HttpSourceClient) -> list[Page]:
    return [page async for page in client.pages()]


# -- 16: the API token ------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "\n", "short\n", "x" * (MIN_TOKEN_CHARS - 1)])
def test_an_empty_or_short_token_file_is_regenerated(tmp_path: Path, content: str) -> None:
    settings = Settings(db_path=tmp_path / "data" / "x.duckdb", api_token=None)
    settings.token_path.parent.mkdir(parents=True)
    settings.token_path.write_text(content)
    assert settings.known_token() is None  # not a usable token
    token, path = ensure_token(settings)
    assert path == settings.token_path and len(token) >= MIN_TOKEN_CHARS
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.known_token() == token
    assert sorted(os.listdir(path.parent)) == ["api_token"]  # no temp file left behind


def test_the_token_file_is_written_whole_and_private_and_kept(tmp_path: Path) -> None:
    settings = Settings(db_path=tmp_path / "data" / "x.duckdb", api_token=None)
    old = os.umask(0)  # a lax umask must not loosen the file's mode
    try:
        token, path = ensure_token(settings)
    finally:
        os.umask(old)
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token(settings) == (token, path)  # a valid file is kept as it is
    assert sorted(os.listdir(path.parent)) == ["api_token"]


def test_a_short_tg_api_token_is_a_clear_error_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match=f"at least {MIN_TOKEN_CHARS} characters"):
        Settings(api_token="short")
    # a Settings copied past validation still cannot serve with it
    copied = Settings(db_path=tmp_path / "x.duckdb").model_copy(update={"api_token": "short"})
    with pytest.raises(ValueError, match=f"at least {MIN_TOKEN_CHARS} characters"):
        ensure_token(copied)
    from tg_actors.cli.main import main

    monkeypatch.setenv("TG_API_TOKEN", "only-12-char")
    assert main(["up", "--db", str(tmp_path / "x.duckdb")]) == 2
    err = capsys.readouterr().err
    assert "setting api_token" in err and f"at least {MIN_TOKEN_CHARS} characters" in err


def test_an_empty_expected_token_matches_nothing() -> None:
    assert not token_matches("", "")
    assert not token_matches("short", "short")
    assert token_matches(TOKEN, TOKEN)


# -- 17: OpenAPI and docs need the token -----------------------------------------------------


def api_client() -> TestClient:
    from serve.routes.api import build_api

    app = build_api(None, TOKEN)  # type: ignore[arg-type]  # these routes never reach it
    return TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)


@pytest.mark.parametrize("path", ["/api/openapi.json", "/api/docs"])
def test_openapi_and_docs_need_the_token(path: str) -> None:
    c = api_client()
    assert c.get(path).status_code == 401
    assert c.get(path, headers={"Authorization": "Bearer wrong-but-long-enough"}).status_code == 401
    assert c.get(path, headers={"Authorization": "Bearer "}).status_code == 401
    assert c.get(path, headers={"Cookie": f"{COOKIE}=forged"}).status_code == 401
    by_bearer = c.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert by_bearer.status_code == 200
    # a signed-in browser (the UI's session cookie) opens them too
    c.cookies.set(COOKIE, session_value(TOKEN))
    by_cookie = c.get(path)
    assert by_cookie.status_code == 200 and by_cookie.text == by_bearer.text
    if path.endswith(".json"):
        assert "/api/jobs/{name}" in by_cookie.json()["paths"]
    else:
        assert "swagger" in by_cookie.text.lower() and "/api/openapi.json" in by_cookie.text


def test_a_browser_without_a_session_is_sent_to_sign_in_for_the_docs() -> None:
    r = api_client().get("/api/docs", headers={"Accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fapi%2Fdocs"


# -- 18: login's `next` -----------------------------------------------------------------------


def ui_client() -> TestClient:
    async def echo(request: Request) -> Response:
        return Response(request.url.path)

    app = Starlette(routes=[Route("/{path:path}", echo)])
    return TestClient(UiAuth(app, TOKEN), base_url="http://127.0.0.1", follow_redirects=False)


@pytest.mark.parametrize(
    "target",
    [
        "/\\evil.example",
        "/\\/evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "/\x00/evil.example",
        "/ /evil.example",
        "///evil.example",
        "/x\x7f",
        "http:/evil.example",
        "/\u3000/evil.example",
    ],
)
def test_login_next_refuses_backslashes_controls_and_other_origins(target: str) -> None:
    c = ui_client()
    ok = c.post("/login", data={"token": TOKEN, "next": target})
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    page = c.get("/login", params={"next": target})
    assert 'name="next" value="/"' in page.text


@pytest.mark.parametrize("target", ["/", "/runs", "/?tab=runs&x=%2F%2Fok", "/api/docs"])
def test_login_next_keeps_a_local_path(target: str) -> None:
    ok = ui_client().post("/login", data={"token": TOKEN, "next": target})
    assert ok.headers["location"] == target


# -- 19a: which environment variables a job may name ------------------------------------------


def shipped_secret_names() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "configs").rglob("*.yaml"):
        names |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", path.read_text()))
    return names


def test_the_default_allow_list_keeps_the_shipped_examples_working() -> None:
    names = shipped_secret_names()
    assert "GITHUB_TOKEN" in names and "EXAMPLE_CLIENT_ID" in names, names
    default = SecretNames.parse(DEFAULT_SECRET_ENV)
    assert [name for name in sorted(names) if not default.allows(name)] == []
    assert Settings().secret_env == DEFAULT_SECRET_ENV
    for name in ("PATH", "HOME", "DATABASE_URL", "AWS_PROFILE", "RAY_ADDRESS"):
        assert not default.allows(name), name
    # the engine's own settings (the API token first) only through a pattern naming TG_
    assert not default.allows("TG_API_TOKEN")
    assert not SecretNames.parse("*").allows("TG_API_TOKEN")
    assert SecretNames.parse("TG_SHOP_*").allows("TG_SHOP_TOKEN")


async def test_a_job_naming_a_variable_outside_the_allow_list_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://admin:hunter2@db/prod")
    monkeypatch.setenv("SHOP_TOKEN", SECRET)
    monkeypatch.delenv("TG_SECRET_ENV", raising=False)
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=[])

    spec = source(
        headers={"X-Leak": "${DATABASE_URL}"}, auth={"type": "bearer", "token": "${SHOP_TOKEN}"}
    )
    client = HttpSourceClient(spec, transport=httpx.MockTransport(handler))
    with pytest.raises(SecretNotAllowed) as caught:
        await read(client)
    message = str(caught.value)
    assert "source.headers.X-Leak" in message and "${DATABASE_URL}" in message
    assert "TG_SECRET_ENV" in message and "hunter2" not in message
    assert sent == []  # refused before any request

    monkeypatch.setenv("TG_SECRET_ENV", "DATABASE_*, *_TOKEN")  # the operator widens it
    await read(HttpSourceClient(spec, transport=httpx.MockTransport(handler)))
    assert sent[0].headers["x-leak"] == "postgres://admin:hunter2@db/prod"

    monkeypatch.setenv("TG_API_TOKEN", TOKEN)
    own = source(auth={"type": "bearer", "token": "${TG_API_TOKEN}"})
    with pytest.raises(SecretNotAllowed, match=r"source\.auth\.token"):
        await read(HttpSourceClient(own, transport=httpx.MockTransport(handler)))


# -- 19b: secret values a source echoes back -------------------------------------------------


def echo_app() -> Starlette:
    """`/items`: one record echoing what it was sent, in fields at several depths."""

    async def items(request: Request) -> JSONResponse:
        seen = request.headers.get("authorization", "")
        record = {
            "id": 1,
            "auth": seen,
            "nested": {"url": str(request.url), "tags": [f"k={request.query_params['key']}"]},
            seen.removeprefix("Bearer "): "a secret as a key",
            "plain": "nothing to hide",
            "n": 42,
        }
        return JSONResponse({"data": [record]})

    return Starlette(routes=[Route("/items", items)])


async def test_secret_values_echoed_by_the_source_never_reach_the_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOP_TOKEN", SECRET)
    monkeypatch.delenv("TG_SECRET_ENV", raising=False)
    with serve_app(echo_app()) as base:
        spec = source(
            url=f"{base}/items",
            params={"key": "${SHOP_TOKEN}"},
            auth={"type": "bearer", "token": "${SHOP_TOKEN}"},
            records="$.data",
        )
        pages = await read(HttpSourceClient(spec))
    (record,) = pages[0].records
    assert SECRET not in repr(record), record
    assert record["auth"] == "Bearer ***"
    assert record["nested"]["tags"] == ["k=***"] and "key=***" in record["nested"]["url"]
    assert record["***"] == "a secret as a key"
    assert record["plain"] == "nothing to hide" and record["n"] == 42


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": [{"e": "ab\\/cd-efgh-ijkl"}]}',  # JSON may escape "/"
        b'{"data": [{"e": "\\u0061b/cd-efgh-ijkl!"}]}',  # or any character
    ],
)
async def test_an_escaped_echo_is_scrubbed_too(body: bytes) -> None:
    spec = source(auth={"type": "bearer", "token": "${TOKEN}"}, records="$.data")
    client = HttpSourceClient(
        spec,
        env={"TOKEN": "ab/cd-efgh-ijkl"},
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body)),
    )
    (page,) = await read(client)
    assert page.records[0]["e"].startswith("***")


# -- 19c: private, link-local and metadata targets -------------------------------------------


@pytest.mark.parametrize(
    ("address", "private", "loopback"),
    [
        ("169.254.169.254", True, False),
        ("10.1.2.3", True, False),
        ("172.16.0.1", True, False),
        ("172.31.255.255", True, False),
        ("192.168.1.1", True, False),
        ("100.100.100.200", True, False),  # carrier-grade NAT: a cloud's metadata service
        ("fe80::1", True, False),
        ("fd00::1", True, False),
        ("::ffff:169.254.169.254", True, False),  # IPv4-mapped
        ("64:ff9b::a9fe:a9fe", True, False),  # NAT64 of 169.254.169.254
        ("2002:a00:1::", True, False),  # 6to4 of 10.0.0.1
        ("127.0.0.1", False, True),
        ("::1", False, True),
        ("0.0.0.0", False, True),
        ("8.8.8.8", False, False),
        ("172.32.0.1", False, False),
        ("2606:4700::1111", False, False),
    ],
)
def test_which_addresses_are_private_or_loopback(
    address: str, private: bool, loopback: bool
) -> None:
    assert TargetPolicy(block_private=True).refuses(address) == private
    assert TargetPolicy(block_loopback=True).refuses(address) == loopback
    assert not TargetPolicy().refuses(address)


def redirect_app() -> Starlette:
    async def items(request: Request) -> JSONResponse:
        return JSONResponse({"data": [{"id": 1}]})

    async def away(request: Request) -> RedirectResponse:
        return RedirectResponse(request.query_params["to"], status_code=302)

    return Starlette(routes=[Route("/items", items), Route("/away", away)])


async def test_private_targets_are_refused_when_asked_also_after_a_redirect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TG_BLOCK_PRIVATE_TARGETS", "true")
    monkeypatch.delenv("TG_BLOCK_LOOPBACK_TARGETS", raising=False)
    with serve_app(redirect_app()) as base:
        # loopback stays allowed: the local API is read
        ok = await read(HttpSourceClient(source(url=f"{base}/items", records="$.data")))
        assert ok[0].records == [{"id": 1}]
        for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/"):
            spec = source(url=f"{base}/away", params={"to": target}, timeout="2s", max_tries=1)
            with pytest.raises(SourceError, match="BlockedTarget") as caught:
                await read(HttpSourceClient(spec))
            assert target.split("/")[2] in str(caught.value)
        direct = source(url="http://[fe80::1]/x", timeout="2s", max_tries=1)
        with pytest.raises(SourceError, match="link-local or private"):
            await read(HttpSourceClient(direct))

        monkeypatch.setenv("TG_BLOCK_LOOPBACK_TARGETS", "true")
        for url in (f"{base}/items", f"{base.replace('127.0.0.1', 'localhost')}/items"):
            with pytest.raises(SourceError, match="loopback"):
                await read(HttpSourceClient(source(url=url, max_tries=1)))


def test_blocked_target_is_not_retried() -> None:
    # a refused target is a RequestError, not a network error: no try could fix it
    assert not issubclass(BlockedTarget, httpx.TransportError)
    assert issubclass(BlockedTarget, httpx.RequestError)


def test_the_settings_reach_the_engines_as_their_environment() -> None:
    # `tg up` hands these to every Ray worker (runtime_env env_vars): the engines read them
    default = Settings().engine_env()
    assert not TargetPolicy.from_environ(default).active
    assert SecretNames.from_environ(default) == SecretNames.parse(DEFAULT_SECRET_ENV)
    strict = Settings(
        block_private_targets=True, block_loopback_targets=True, secret_env="SHOP_*"
    ).engine_env()
    assert TargetPolicy.from_environ(strict) == TargetPolicy(True, True)
    assert SecretNames.from_environ(strict).patterns == ("SHOP_*",)


# -- 20: the transform's CTE scope and the sandbox's memory ----------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        # a CTE inside a subquery does not reach the outer query
        "SELECT * FROM records, (WITH duckdb_tables AS (SELECT 1) SELECT * FROM duckdb_tables) s"
        ", duckdb_tables",
        "SELECT * FROM records WHERE EXISTS (SELECT * FROM duckdb_settings)"
        " AND 1 IN (WITH duckdb_settings AS (SELECT 1 AS x) SELECT x FROM duckdb_settings)",
        # nor the other side of a UNION
        "(WITH duckdb_views AS (SELECT 1) SELECT * FROM records) UNION ALL "
        "(SELECT * FROM duckdb_views)",
        # a CTE's own body reads the table of its name, not itself
        "WITH duckdb_tables AS (SELECT * FROM duckdb_tables) SELECT * FROM records, duckdb_tables",
        # nor a later CTE of the same WITH
        "WITH a AS (SELECT * FROM duckdb_columns), duckdb_columns AS (SELECT 1) "
        "SELECT * FROM records, a",
        # a recursive CTE's anchor reads the table of its name
        "WITH RECURSIVE duckdb_types AS (SELECT * FROM duckdb_types UNION ALL "
        "SELECT * FROM duckdb_types) SELECT * FROM records, duckdb_types",
    ],
)
def test_a_cte_name_is_known_only_in_its_scope(sql: str) -> None:
    problem = transform_sql_problem(sql)
    assert problem is not None and "reads 'duckdb_" in problem, problem


@pytest.mark.parametrize(
    "sql",
    [
        "WITH a AS (SELECT * FROM records), b AS (SELECT * FROM a) SELECT * FROM b",
        "WITH a AS (SELECT * FROM records) SELECT * FROM (SELECT * FROM a) s",
        "WITH a AS (SELECT * FROM records) SELECT * FROM records WHERE id IN (SELECT id FROM a)",
        "WITH a AS (SELECT * FROM records) SELECT * FROM a UNION ALL SELECT * FROM a",
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 3) "
        "SELECT * FROM records, t",
        "SELECT * FROM (WITH a AS (SELECT * FROM records) SELECT * FROM a) s",
    ],
)
def test_ctes_used_in_scope_still_pass(sql: str) -> None:
    assert transform_sql_problem(sql) is None


def test_a_transform_cannot_exhaust_memory() -> None:
    table = records_to_arrow([{"id": i} for i in range(3)])
    # far more output than the sandbox may hold: refused, the engine is not killed
    with pytest.raises(TransformError, match="more than"):
        apply_transform(table, "SELECT * FROM records, range(1000000000000)")
    # DuckDB's own memory is capped too (a sort must hold all its rows)
    with pytest.raises(TransformError, match="(?i)out of memory"):
        apply_transform(table, "SELECT * FROM records, range(1000000000000) ORDER BY 2 DESC")
    with pytest.raises(TransformError, match="(?i)out of memory"):
        apply_transform(table, "SELECT list(range) FROM records, range(100000000)")
    assert TRANSFORM_MAX_OUTPUT_BYTES <= 512 << 20
    out = apply_transform(table, "SELECT id * 2 AS d FROM records ORDER BY d")
    assert out.column("d").to_pylist() == [0, 2, 4]
    empty = apply_transform(table, "SELECT id FROM records WHERE id > 10")
    assert empty.num_rows == 0 and empty.schema.names == ["id"]
    assert isinstance(out, pa.Table)


def test_the_sandbox_settings_are_capped_and_locked() -> None:
    table = records_to_arrow([{"id": 1}])
    out = apply_transform(
        table,
        "SELECT current_setting('memory_limit') AS m, current_setting('threads') AS t, "
        "current_setting('temp_directory') AS d FROM records",
    )
    row = out.to_pylist()[0]
    assert row["t"] == 1 and row["d"] == ""
    assert row["m"].endswith(("MiB", "MB")) and float(row["m"].split()[0]) <= 512
    with pytest.raises(TransformError):
        apply_transform(table, "SELECT * FROM records WHERE (SET memory_limit='10GB') IS NULL")
