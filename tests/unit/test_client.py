"""tg_actors.client without a server: the API's `detail` (text or pydantic's list) carried by
ApiError with the status; the package import stays light (no httpx until Client is used)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from tests.kit.cli import free_port
from tg_actors.client import ApiError, Client, RunTimeout, Unreachable


def _client(status: int, body: object) -> Client:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer t0ken-t0ken-t0ken"
        return httpx.Response(status, json=body)

    return Client("http://api.test", "t0ken-t0ken-t0ken", transport=httpx.MockTransport(answer))


def test_api_errors_carry_the_status_and_the_detail() -> None:
    with pytest.raises(ApiError) as caught:
        _client(404, {"detail": "no job named 'x'"}).trigger("x")
    assert caught.value.status == 404 and caught.value.detail == "no job named 'x'"
    refused = {"detail": [{"loc": ["body", "sql"], "msg": "query refused: DELETE …"}]}
    with pytest.raises(ApiError) as caught:
        _client(422, refused).sql("DELETE FROM t")
    assert caught.value.status == 422 and caught.value.detail == "sql: query refused: DELETE …"
    assert str(caught.value).startswith("422: sql: query refused")


def test_the_token_defaults_to_tg_api_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_API_TOKEN", "t0ken-t0ken-t0ken")
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json=[])

    assert Client("http://api.test", transport=httpx.MockTransport(answer)).jobs() == []
    assert seen == ["Bearer t0ken-t0ken-t0ken"]


def test_importing_the_package_loads_no_http_client() -> None:
    code = (
        "import sys, tg_actors; assert 'httpx' not in sys.modules;"
        " import tg_actors.client as c; assert tg_actors.Client is c.Client"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_trigger_waiting_past_its_timeout_raises_run_timeout() -> None:
    polls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            assert request.url.path == "/api/jobs/orders/runs"
            return httpx.Response(202, json={"run_id": "r1", "state": "queued"})
        assert request.url.path == "/api/runs/r1"
        polls.append(request.url.path)
        return httpx.Response(200, json={"run_id": "r1", "state": "running"})  # never ends

    tg = Client("http://api.test", "t0ken-t0ken-t0ken", transport=httpx.MockTransport(answer))
    with pytest.raises(RunTimeout) as caught:
        tg.trigger("orders", wait=True, timeout=0.1, every=0.01)
    assert caught.value.run == {"run_id": "r1", "state": "running"}
    assert str(caught.value) == "run r1 still running after 0.1s"
    assert isinstance(caught.value, TimeoutError) and len(polls) >= 2


def test_nothing_listening_raises_unreachable_with_status_0(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "t0ken-t0ken-t0ken") as tg:
        with pytest.raises(Unreachable) as caught:
            tg.sql("SELECT 1")
        assert caught.value.status == 0 and f"no turbo-giggle API at {url}" in caught.value.detail
        assert isinstance(caught.value, ApiError)
        with pytest.raises(Unreachable) as caught:
            tg.sql_to_file("SELECT 1", tmp_path / "r.parquet")
        assert caught.value.status == 0 and list(tmp_path.iterdir()) == []  # no part file left


def _runs_api(seen: list[tuple[str, str, object]], states: list[str]) -> Client:
    """An API whose POSTs answer 202 {run_id: r7}; each GET of r7 the next of `states`."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.path, body))
        if request.method == "POST":
            return httpx.Response(202, json={"run_id": "r7"})
        assert request.url.path == "/api/runs/r7"
        state = states.pop(0) if len(states) > 1 else states[0]
        return httpx.Response(200, json={"run_id": "r7", "state": state, "rows_loaded": 5})

    return Client("http://api.test", "t0ken-t0ken-t0ken", transport=httpx.MockTransport(answer))


def test_backfill_posts_the_range_and_waits_for_the_run() -> None:
    seen: list[tuple[str, str, object]] = []
    tg = _runs_api(seen, ["queued", "running", "succeeded"])
    start = datetime(2024, 5, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    run = tg.backfill("orders", start, datetime(2024, 5, 2), every=0.01)
    assert run == {"run_id": "r7", "state": "succeeded", "rows_loaded": 5}
    assert seen[0] == (
        "POST",
        "/api/jobs/orders/backfill",
        {"from": "2024-05-01T00:00:00Z", "to": "2024-05-02T00:00:00Z"},  # naive: UTC
    )
    assert [s[:2] for s in seen[1:]] == [("GET", "/api/runs/r7")] * 3


def test_backfill_sends_dates_and_text_as_they_are_and_need_not_wait() -> None:
    seen: list[tuple[str, str, object]] = []
    run = _runs_api(seen, ["queued"]).backfill(
        "orders", date(2024, 5, 1), "2024-05-02T06:00:00+02:00", wait=False
    )
    assert run["state"] == "queued"
    assert seen[0][2] == {"from": "2024-05-01", "to": "2024-05-02T06:00:00+02:00"}
    assert len(seen) == 2  # the POST and one read of the run


def test_refresh_posts_and_waits_like_trigger() -> None:
    seen: list[tuple[str, str, object]] = []
    run = _runs_api(seen, ["running", "failed"]).refresh("orders", every=0.01)
    assert run["state"] == "failed"
    assert seen[0] == ("POST", "/api/jobs/orders/refresh", None)
    with pytest.raises(RunTimeout) as caught:
        _runs_api([], ["running"]).refresh("orders", timeout=0.05, every=0.01)
    assert str(caught.value) == "run r7 still running after 0.05s"


def test_a_refused_backfill_raises_api_error_with_the_reason() -> None:
    detail = "job orders writes with replace: use refresh"
    with pytest.raises(ApiError) as caught:
        _client(422, {"detail": detail}).backfill("orders", "2024-05-01", "2024-05-02")
    assert caught.value.status == 422 and caught.value.detail == detail
    with pytest.raises(ApiError) as caught:
        _client(404, {"detail": "No job named 'x'"}).refresh("x")
    assert caught.value.status == 404
