"""`tg backfill` and `tg refresh` in subprocesses against a small real HTTP stand-in for the
API (a Starlette app served by uvicorn on 127.0.0.1, in a thread): the requests it received
(path, body, token) and the exit codes: 0 succeeded, 1 failed / refused (the server's
message), 2 usage, 3 no such job or nothing listening."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.kit.cli import free_port, run_tg, tg, tg_env

pytestmark = [pytest.mark.slow]
TOKEN = "e2e-backfill-token-0123456789"
REFUSED = "job snapshot writes with replace: a backfill would leave only its range in the table"


@dataclass
class StandIn:
    """The API's backfill, refresh and run routes: `orders` succeeds (42 rows) after one
    `running` read, `flaky` fails, `snapshot` refuses a backfill (422), anything else is 404."""

    port: int
    received: list[tuple[str, str, Any]] = field(default_factory=list)
    reads: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def posts(self) -> list[tuple[str, Any]]:
        return [(path, body) for method, path, body in self.received if method == "POST"]

    async def queue(self, request: Request) -> JSONResponse:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        self.received.append((request.method, request.url.path, body))
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"detail": "missing or invalid bearer token"}, status_code=401)
        name, kind = request.path_params["name"], request.path_params["kind"]
        if name not in ("orders", "flaky", "snapshot"):
            return JSONResponse({"detail": f"No job named {name!r}"}, status_code=404)
        if name == "snapshot" and kind == "backfill":
            return JSONResponse({"detail": REFUSED}, status_code=422)
        return JSONResponse({"run_id": f"{name}-{kind}-1"}, status_code=202)

    async def run(self, request: Request) -> JSONResponse:
        run_id = request.path_params["run_id"]
        self.received.append((request.method, request.url.path, None))
        seen = self.reads[run_id] = self.reads.get(run_id, 0) + 1
        run: dict[str, Any] = {"run_id": run_id, "state": "queued", "rows_loaded": 0}
        if seen >= 2:
            run["state"] = "running"
        if seen >= 3 and run_id.startswith("flaky"):
            run.update(state="failed", error="HTTP 500 from the source on page 3")
        elif seen >= 3:
            run.update(state="succeeded", rows_loaded=42)
        return JSONResponse(run)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/jobs/{name}/{kind:str}", self.queue, methods=["POST"]),
                Route("/api/runs/{run_id}", self.run, methods=["GET"]),
            ]
        )


@pytest.fixture
def api() -> Iterator[StandIn]:
    stand_in = StandIn(free_port())
    config = uvicorn.Config(
        stand_in.app(), host="127.0.0.1", port=stand_in.port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the stand-in did not start"
        time.sleep(0.05)
    yield stand_in
    server.should_exit = True
    thread.join(timeout=10)


def env_for(api: StandIn, token: str | None = TOKEN) -> dict[str, str]:
    env = tg_env(api.port)  # TG_HOST/TG_PORT name the stand-in: the default URL
    if token is not None:
        env["TG_API_TOKEN"] = token
    return env


def tg_run(api: StandIn, cwd: Path, *args: str, token: str | None = TOKEN) -> tuple[int, str]:
    return run_tg(tg(*args), env_for(api, token), cwd, 60)


def test_backfill_posts_the_range_and_waits_for_success(api: StandIn, tmp_path: Path) -> None:
    rc, out = tg_run(api, tmp_path, "backfill", "orders", "--from", "2024-05-01", "--to",
                     "2024-05-02T06:00:00+02:00")  # fmt: skip
    assert rc == 0, out
    assert api.posts() == [
        (
            "/api/jobs/orders/backfill",
            {"from": "2024-05-01T00:00:00Z", "to": "2024-05-02T04:00:00Z"},
        )
    ]
    assert "queued backfill run orders-backfill-1 of job orders" in out
    assert "run orders-backfill-1 succeeded: 42 rows" in out
    assert api.reads["orders-backfill-1"] == 3  # polled until it ended


def test_a_failed_run_exits_1_with_its_error(api: StandIn, tmp_path: Path) -> None:
    rc, out = tg_run(api, tmp_path, "backfill", "flaky", "--from", "2024-05-01T00:00",
                     "--to", "2024-05-03", "--url", api.url)  # fmt: skip
    assert rc == 1, out
    assert api.posts()[0][1] == {"from": "2024-05-01T00:00:00Z", "to": "2024-05-03T00:00:00Z"}
    assert "run flaky-backfill-1 failed: 0 rows" in out
    assert "error: HTTP 500 from the source on page 3" in out


def test_a_refused_backfill_exits_1_with_the_server_message(api: StandIn, tmp_path: Path) -> None:
    rc, out = tg_run(api, tmp_path, "backfill", "snapshot", "--from", "2024-05-01", "--to",
                     "2024-05-02")  # fmt: skip
    assert rc == 1, out
    assert f"422: {REFUSED}" in out
    assert [m for m, *_ in api.received] == ["POST"]  # no run to read


def test_unknown_job_and_nothing_listening_exit_3(api: StandIn, tmp_path: Path) -> None:
    rc, out = tg_run(api, tmp_path, "backfill", "ghost", "--from", "2024-05-01", "--to",
                     "2024-05-02")  # fmt: skip
    assert rc == 3 and "404: No job named 'ghost'" in out, out
    rc, out = tg_run(api, tmp_path, "refresh", "ghost", "--yes")
    assert rc == 3 and "404: No job named 'ghost'" in out, out
    nobody = f"http://127.0.0.1:{free_port()}"
    rc, out = tg_run(api, tmp_path, "refresh", "orders", "--yes", "--url", nobody)
    assert rc == 3, out
    assert f"no turbo-giggle API at {nobody}" in out and "start the system with `tg up`" in out


def test_bad_times_and_no_token_exit_2_sending_nothing(api: StandIn, tmp_path: Path) -> None:
    rc, out = tg_run(api, tmp_path, "backfill", "orders", "--from", "last week", "--to",
                     "2024-05-02")  # fmt: skip
    assert rc == 2 and "--from 'last week': not an ISO 8601 date or datetime" in out, out
    rc, out = tg_run(api, tmp_path, "backfill", "orders", "--from", "2024-05-01")
    assert rc == 2 and "--to" in out, out  # argparse: the required flag
    rc, out = tg_run(api, tmp_path, "backfill", "orders", "--from", "2024-05-01", "--to",
                     "2024-05-02", "--db", str(tmp_path / "none.duckdb"), token=None)  # fmt: skip
    assert rc == 2 and "no API token" in out, out
    assert api.received == []


def test_refresh_without_a_terminal_needs_yes(api: StandIn, tmp_path: Path) -> None:
    rc, out = tg_run(api, tmp_path, "refresh", "orders")  # stdin is /dev/null, not a TTY
    assert rc == 2 and "pass --yes" in out, out
    assert api.received == []
    rc, out = tg_run(api, tmp_path, "refresh", "orders", "--yes")
    assert rc == 0, out
    assert api.posts() == [("/api/jobs/orders/refresh", None)]
    assert "queued refresh run orders-refresh-1 of job orders" in out
    assert "run orders-refresh-1 succeeded: 42 rows" in out


def test_no_wait_prints_the_run_id_and_returns(api: StandIn, tmp_path: Path) -> None:
    rc, out = tg_run(api, tmp_path, "refresh", "flaky", "-y", "--no-wait", "--url", api.url)
    assert rc == 0, out
    assert out.strip().splitlines()[-1] == "queued refresh run flaky-refresh-1 of job flaky"
    assert api.reads == {"flaky-refresh-1": 1}  # read once for its id, never waited on


class _Terminal:
    def isatty(self) -> bool:
        return True


def test_refresh_on_a_terminal_asks_first(
    api: StandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In process, stdin a stand-in terminal: "n" queues nothing (exit 1); "yes" queues it."""
    import argparse

    from tg_actors.cli import backfill as backfill_cli

    for key, value in env_for(api).items():
        monkeypatch.setenv(key, value)
    answers = iter(["n", "yes"])
    prompts: list[str] = []

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr(sys, "stdin", _Terminal())
    monkeypatch.setattr("builtins.input", answer)
    # the options `tg refresh orders --no-wait` gives its handler
    args = argparse.Namespace(job="orders", yes=False, url=None, no_wait=True, db_path=None)
    assert backfill_cli.cmd_refresh(args) == 1
    assert api.received == [] and "not confirmed: nothing queued" in capsys.readouterr().err
    assert backfill_cli.cmd_refresh(args) == 0
    assert prompts == ["Replace the table of job orders with a full re-read? [y/N] "] * 2
    assert api.posts() == [("/api/jobs/orders/refresh", None)]
    assert "queued refresh run orders-refresh-1 of job orders" in capsys.readouterr().out
