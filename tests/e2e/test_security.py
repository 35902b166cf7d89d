"""Security: `tg up` in a subprocess whose environment holds a secret.

Two jobs use `${SHOP_TOKEN}` as bearer token, in a header and in a query parameter: `shop`
reads a local API that checks all three and returns rows; `leaky` reads one that answers 500
and echoes the URL and headers, so an error text could carry the secret. Then: every API
route and every UI route needs the token; the secret value shows up in no API answer, no UI
answer, no output line, no run error and no row of the DuckDB file; the token file is 0600;
everything listens on loopback only.

`tg up` is started and stopped by tests/kit/harness.py, as in the restart and load tests.
"""

from __future__ import annotations

import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.kit.cli import free_port, listening_sockets, non_loopback_listeners, psutil, tg_env
from tests.kit.harness import TgUp, db_tables, tg_up
from tests.kit.jobs import write_job
from tests.kit.servers import serve_app

pytestmark = [pytest.mark.slow]

# -- the drill ---------------------------------------------------------------------------------

SHOP_ROWS = 250
PER_PAGE = 100
SECRET_PARAM = "account"  # a name redaction does not know as sensitive: only the value scrub helps


def shop_app(secret: str) -> Starlette:
    """`/shop/items?page=N`: rows only for the secret in all three places; `/leaky/items`:
    500 with the URL and headers echoed in the body."""

    async def items(request: Request) -> Response:
        ok = (
            request.headers.get("authorization") == f"Bearer {secret}"
            and request.headers.get("x-shop-key") == secret
            and request.query_params.get(SECRET_PARAM) == secret
        )
        if not ok:
            return JSONResponse({"detail": "bad credentials"}, 403)
        page = int(request.query_params.get("page", "1"))
        first = (page - 1) * PER_PAGE
        ids = range(first + 1, min(first + PER_PAGE, SHOP_ROWS) + 1)
        return JSONResponse({"data": [{"id": i, "amount": i * 1.5} for i in ids]})

    async def leaky(request: Request) -> Response:
        headers = dict(request.headers)
        return PlainTextResponse(f"upstream broke at {request.url} for {headers}", 500)

    return Starlette(routes=[Route("/shop/items", items), Route("/leaky/items", leaky)])


def secret_job(name: str, url: str, extra: str = "") -> str:
    return (
        f"name: {name}\n"
        "source:\n"
        f"  url: {url}\n"
        f"  params: {{{SECRET_PARAM}: '${{SHOP_TOKEN}}'}}\n"
        "  headers: {X-Shop-Key: '${SHOP_TOKEN}'}\n"
        "  auth: {type: bearer, token: '${SHOP_TOKEN}'}\n"
        '  records: "$.data"\n'
        "  paginate: {type: page}\n"
        f"{extra}"
        "destination:\n"
        f"  table: {name}\n"
        "  write: merge\n"
        "  primary_key: [id]\n"
    )


def fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: values.get(m[1], "dummy"), path)


def ui_routes() -> list[tuple[str, str]]:
    """(method, path) of every route the Serve app has outside the API, as built in this
    process the way serve/app.py builds it (the Gradio UI mounted at /)."""
    from starlette.routing import Mount

    from serve.app import build_asgi_app
    from tg_actors.settings import Settings

    def walk(route: Any, prefix: str) -> Iterator[tuple[str, str]]:
        if hasattr(route, "original_router"):  # FastAPI's included router
            sub = prefix + getattr(route.include_context, "prefix", "")
            for inner in route.original_router.routes:
                yield from walk(inner, sub)
        elif isinstance(route, Mount):
            app: Any = route.app
            while not hasattr(app, "routes"):
                app = app.app
            for inner in app.routes:
                yield from walk(inner, prefix + route.path)
        else:
            for method in sorted(getattr(route, "methods", None) or {"GET"}):
                yield method, prefix + route.path

    app = build_asgi_app(Settings(), "unused")
    found = {r for top in app.routes for r in walk(top, "")}
    return sorted(found)


# the only ways in without the token: the API's own rules (checked against the OpenAPI
# spec), the public demo source, the sign-in pages and the favicon
def public_ui_path(path: str) -> bool:
    return (
        path.startswith(("/api/", "/demo/", "/login"))
        or path == "/metrics"
        or path in ("/logout", "/favicon.ico")
    )


class EventTap(threading.Thread):
    """Reads GET /api/events into `text` until `done(text)` or `seconds` have passed."""

    def __init__(self, server: TgUp, done: Callable[[str], bool], seconds: float) -> None:
        super().__init__(daemon=True)
        self.server, self.done, self.seconds = server, done, seconds
        self.text = ""
        self.opened = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        timeout = httpx.Timeout(10.0, read=20.0)  # a keep-alive comment every 15 s
        try:
            with httpx.Client(base_url=self.server.base, timeout=timeout) as client:
                with client.stream("GET", "/api/events", headers=self.server.auth) as response:
                    assert response.status_code == 200, response.status_code
                    for chunk in response.iter_text():
                        self.text += chunk
                        if ": connected" in self.text:  # the replica's group is subscribed
                            self.opened.set()
                        if self.done(self.text) or time.monotonic() > deadline:
                            return
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.opened.set()


def status_of(client: httpx.Client, method: str, path: str, **kwargs: Any) -> int:
    """The status line only (an event stream is never read)."""
    with client.stream(method, path, **kwargs) as response:
        return response.status_code


def test_secrets_stay_secret_and_everything_needs_the_token(tmp_path: Path) -> None:
    secret = f"s3cr3t-{secrets.token_hex(12)}"
    marker = secret.split("-", 1)[1]  # the random part: found even if the prefix were mangled
    port = free_port()
    configs = tmp_path / "configs"
    db = tmp_path / "data" / "turbo_giggle.duckdb"
    env = tg_env(port) | {"SHOP_TOKEN": secret, "TG_LOG_LEVEL": "INFO"}

    with serve_app(shop_app(secret)) as source:
        write_job(configs, "shop", secret_job("shop", f"{source}/shop/items"))
        leaky_extra = "  max_tries: 2\n  backoff: 10ms\n"
        write_job(configs, "leaky", secret_job("leaky", f"{source}/leaky/items", leaky_extra))
        with tg_up(configs, db, port, tmp_path, env) as server:
            # (d) the generated token file
            assert server.token_file == db.parent / "api_token"
            assert stat.S_IMODE(server.token_file.stat().st_mode) == 0o600

            # (a) every API route of the OpenAPI spec but GET /api/health refuses a request
            # without the token, with a wrong one, and with the right one in the wrong place
            bare = httpx.get(f"{server.base}/api/openapi.json", timeout=30)
            assert bare.status_code == 401, "the OpenAPI spec needs the token"
            spec = httpx.get(f"{server.base}/api/openapi.json", headers=server.auth, timeout=30)
            spec = spec.json()
            shop_before = server.get("/api/jobs/shop")
            refused = check_api_needs_token(server, spec, shop_before)
            assert server.get("/api/jobs/shop") == shop_before, "an unauthorised call changed it"
            assert server.get("/api/runs") == [], "an unauthorised trigger queued a run"

            # (b) the UI needs it too: 401, or a redirect to /login for a browser
            ui_checked = check_ui_needs_token(server)

            # runs, with a live event stream open meanwhile
            tap = EventTap(
                server, lambda t: '"state":"succeeded"' in t and '"state":"failed"' in t, 90
            )
            tap.start()
            assert tap.opened.wait(30) and tap.error is None, tap.error
            ids = {job: server.trigger(job) for job in ("shop", "leaky")}
            runs = server.wait_ended(list(ids.values()), 120)
            shop_run, leaky_run = runs[ids["shop"]], runs[ids["leaky"]]
            assert shop_run["state"] == "succeeded", shop_run
            assert shop_run["rows_loaded"] == SHOP_ROWS, shop_run
            assert leaky_run["state"] == "failed", leaky_run
            # the echo reached the error text, scrubbed: the leak path was really exercised
            assert "500" in leaky_run["error"] and "***" in leaky_run["error"], leaky_run
            tap.join(30)
            assert tap.error is None, tap.error
            assert '"state":"failed"' in tap.text, tap.text

            # (c) the secret in no API answer ...
            answers = api_answers(server, list(ids.values()))
            answers["GET /api/events"] = tap.text
            assert "***" in answers["GET /api/jobs/shop"]  # masked, not dropped
            # ... and in no UI answer
            answers |= ui_answers(server, list(ids.values()))
            leaks = [where for where, text in answers.items() if marker in text]
            assert not leaks, f"the secret is in: {leaks}"

            # (e) loopback only: the API port on 127.0.0.1 alone, nothing on 0.0.0.0
            tree = server.tree()
            listening = listeners(tree)
            api_port = {ip for ip, p, _ in listening if p == port}
            assert api_port == {"127.0.0.1"}, f"port {port} listens on {api_port}"
            assert not [x for x in listening if x[0] == "0.0.0.0"], listening
            exposed = non_loopback_listeners(tree)
            assert not exposed, f"listening beyond loopback: {exposed}"
            session = ray_session_dir(tree)

            stop_s = server.stop()

    # (c) ... no line of the output, no Ray log file of this session ...
    output = server.proc.output
    assert "a new API token was generated" in output  # the output was really captured
    assert marker not in output, [line for line in server.proc.lines if marker in line]
    logs = ray_logs(session)
    assert logs, f"no Ray log files found (session folder {session})"
    logged = [p for p in logs if marker in p.read_text("utf-8", errors="replace")]
    assert not logged, f"the secret is in Ray's log files: {logged}"
    # ... and no row of the DuckDB file, in any column of any table of schema tg or main
    found, scanned = scan_db(db, marker)
    assert not found, f"the secret is stored in: {found}"
    assert ("tg", "runs") in scanned and ("main", "shop") in scanned, scanned
    print(
        f"security drill: up in {server.up_s:.1f}s, {refused} unauthorised API requests "
        f"refused, {ui_checked} UI requests refused, {len(answers)} answers scanned, "
        f"{len(scanned)} tables and {len(logs)} Ray log files scanned, stopped in {stop_s:.1f}s"
    )


def check_api_needs_token(server: TgUp, spec: dict[str, Any], job: dict[str, Any]) -> int:
    """Each operation of the spec, path parameters filled (the job name with a real job, so a
    call that got through would show), with no token, a wrong one, the token in the query
    string, and the token under another scheme: all 401. Returns the requests made."""
    body = {k: v for k, v in job.items() if k != "status"} | {"description": "changed"}
    wrong = [
        {},
        {"headers": {"Authorization": "Bearer wrong-token"}},
        {"headers": {"Authorization": f"Bearer {server.token}x"}},
        {"params": {"token": server.token}},
        {"headers": {"Authorization": f"Basic {server.token}"}},
        {"headers": {"Authorization": server.token}},
        {"cookies": {"tg_session": server.token}},
    ]
    operations = [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    ]
    expected = {("GET", "/api/events"), ("GET", "/metrics"), ("PUT", "/api/jobs/{name}")}
    assert expected <= set(operations), operations
    operations += [("GET", "/api/openapi.json"), ("GET", "/api/docs")]  # not in the spec itself
    bad: list[str] = []
    count = 0
    with httpx.Client(base_url=server.base, timeout=15) as client:
        for method, path in operations:
            if (method, path) == ("GET", "/api/health"):
                assert status_of(client, method, path) == 200
                continue
            url = fill(path, {"name": "shop", "run_id": "0" * 32})
            for variant in wrong:
                kwargs: dict[str, Any] = {**variant}
                if method in ("PUT", "POST"):
                    kwargs["json"] = body
                code = status_of(client, method, url, **kwargs)
                count += 1
                if code != 401:
                    bad.append(f"{method} {url} {variant}: {code}")
    assert not bad, "answered without the token:\n" + "\n".join(bad)
    return count


def check_ui_needs_token(server: TgUp) -> int:
    routes = [(m, p) for m, p in ui_routes() if not public_ui_path(p)]
    paths = {p for _, p in routes}
    assert {"/", "/config", "/gradio_api/info", "/gradio_api/queue/join"} <= paths, paths
    bad: list[str] = []
    count = 0
    html = {"Accept": "text/html,application/xhtml+xml"}
    with httpx.Client(base_url=server.base, timeout=15, follow_redirects=False) as client:
        for method, path in routes:
            url = fill(path, {})
            for headers in (
                {},
                {"Authorization": "Bearer wrong-token"},
                {"Cookie": "tg_session=forged"},
            ):
                code = status_of(client, method, url, headers=headers)
                count += 1
                if code != 401:
                    bad.append(f"{method} {url} {headers}: {code}")
                if method == "GET":  # a browser is sent to the sign-in page instead
                    with client.stream(method, url, headers=headers | html) as response:
                        count += 1
                        location = response.headers.get("location", "")
                        if response.status_code not in (302, 303, 307) or not location.startswith(
                            "/login"
                        ):
                            bad.append(f"{method} {url} as a browser: {response.status_code}")
        # the sign-in link with a wrong token signs nobody in
        code = client.get("/", params={"token": "wrong"}, headers=html).status_code
        assert code == 303 and "set-cookie" not in client.get("/?token=wrong").headers
    assert not bad, "the UI answered without the token:\n" + "\n".join(bad)
    return count


def api_answers(server: TgUp, run_ids: list[str]) -> dict[str, str]:
    """Every GET of the API with the token, as text, keyed by what was asked."""
    out: dict[str, str] = {}

    def get(path: str, **params: Any) -> Any:
        response = server.client.get(path, params=params)
        assert response.status_code == 200, f"{path}: {response.status_code}"
        out[f"GET {path}"] = response.text
        return response.json() if "json" in response.headers.get("content-type", "") else None

    jobs = get("/api/jobs")
    for job in jobs:
        get(f"/api/jobs/{job['name']}")
        stored = server.get(f"/api/jobs/{job['name']}")
        validated = server.client.post(
            f"/api/jobs/{job['name']}/validate",
            json={k: v for k, v in stored.items() if k not in ("status", "paused", "origin")},
        )
        assert validated.status_code == 200, validated.text
        out[f"POST /api/jobs/{job['name']}/validate"] = validated.text
    get("/api/runs", limit=1000)
    for state in ("succeeded", "failed"):
        get("/api/runs", state=state)
    for run_id in run_ids:
        get(f"/api/runs/{run_id}")
        get(f"/api/runs/{run_id}/logs")
    tables = get("/api/tables")
    assert {t["name"] for t in tables} == {"shop"}, tables
    for table in tables:
        get(f"/api/tables/{table['name']}", limit=10_000)
    get("/metrics")
    get("/api/openapi.json")
    return out


def ui_answers(server: TgUp, run_ids: list[str]) -> dict[str, str]:
    """The UI's pages and config with the token, and what its client endpoints return."""
    from gradio_client import Client

    from ui.format import ALL

    out: dict[str, str] = {}
    for path in ("/", "/config", "/gradio_api/info", "/gradio_api/openapi.json"):
        response = server.client.get(path)
        assert response.status_code == 200, f"{path}: {response.status_code}"
        out[f"UI GET {path}"] = response.text
    ui = Client(server.base, verbose=False, headers=server.auth)
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("/refresh", ()),
        ("/load_job", ("shop",)),
        ("/load_job", ("leaky",)),
        ("/runs", (ALL, ALL)),
        ("/preview", ("shop",)),
        ("/stats", ()),
        *(("/run_detail", (run_id,)) for run_id in run_ids),
    ]
    for api_name, args in calls:
        out[f"UI {api_name}{args}"] = repr(ui.predict(*args, api_name=api_name))
    shop_yaml = out["UI /load_job('shop',)"]
    assert "***" in shop_yaml and "X-Shop-Key" in shop_yaml, shop_yaml
    return out


def listeners(procs: list[psutil.Process]) -> list[tuple[str, int, str]]:
    return [(ip, port, name) for _, ip, port, name in listening_sockets(procs)]


def ray_session_dir(procs: list[psutil.Process]) -> Path | None:
    """This tg's Ray session folder (from a Ray process's command line), for its log files."""
    for proc in procs:
        with suppress(psutil.Error):
            for arg in proc.cmdline():
                if m := re.search(r"--session[-_]dir=(\S+)", arg):
                    return Path(m[1])
    return None


def ray_logs(session: Path | None) -> list[Path]:
    if session is None or not (session / "logs").is_dir():
        return []
    return [p for p in (session / "logs").rglob("*") if p.is_file()]


def scan_db(db: Path, marker: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(table.column holding `marker`, tables scanned): every column of every table of
    schemas tg and main, read as text (VARCHAR as is; structs, lists and JSON as rendered)."""
    con = duckdb.connect(str(db), read_only=True)
    found = []
    try:
        tables = db_tables(con, ("tg", "main"))
        for schema, table in tables:
            columns = con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database()"
                " AND schema_name = ? AND table_name = ?",
                [schema, table],
            ).fetchall()
            for (column,) in columns:
                hits = con.execute(
                    f'SELECT count(*) FROM "{schema}"."{table}" WHERE contains(CAST("{column}" AS VARCHAR), ?)',
                    [marker],
                ).fetchone()
                if hits and hits[0]:
                    found.append(f"{schema}.{table}.{column} ({hits[0]} rows)")
    finally:
        con.close()
    return found, tables
