"""POST /api/jobs/{name}/backfill and /refresh through the real FastAPI app with a stand-in
service (no Ray): 202 {run_id}, the range as aware UTC datetimes (a naive time or a date
alone is UTC), 422 by field path for a missing or bad field, 404 for an unknown job, 422
with BackfillRefused's message, 401 without the token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from starlette.testclient import TestClient

from serve.routes.api import build_api
from serve.service import ApiService
from tg_actors.errors import BackfillRefused, JobNotFound

TOKEN = "unit-token-123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class _Service(ApiService):
    """Records the backfill and refresh calls; `orders` is the only job."""

    def __init__(self) -> None:
        super().__init__("unit", cache_seconds=0)
        self.calls: list[tuple[Any, ...]] = []
        self.refuse: str | None = None

    async def backfill(
        self, name: str, start: datetime, end: datetime, *, command_id: str | None = None
    ) -> str:
        self.calls.append(("backfill", name, start, end))
        if name != "orders":
            raise JobNotFound(name)
        if self.refuse:
            raise BackfillRefused(self.refuse)
        return "run-b1"

    async def refresh(self, name: str, *, command_id: str | None = None) -> str:
        self.calls.append(("refresh", name))
        if name != "orders":
            raise JobNotFound(name)
        return "run-r1"


@pytest.fixture
def service() -> _Service:
    return _Service()


@pytest.fixture
def api(service: _Service) -> TestClient:
    return TestClient(build_api(service, TOKEN), base_url="http://127.0.0.1")


def test_backfill_answers_202_with_the_run_id_and_passes_aware_datetimes(
    api: TestClient, service: _Service
) -> None:
    body = {"from": "2024-05-01T00:00:00Z", "to": "2024-05-02T12:30:00+02:00"}
    r = api.post("/api/jobs/orders/backfill", json=body, headers=AUTH)
    assert r.status_code == 202 and r.json() == {"run_id": "run-b1"}
    _, name, start, end = service.calls[-1]
    assert name == "orders"
    assert start == datetime(2024, 5, 1, tzinfo=UTC) and start.utcoffset() == timedelta(0)
    assert end == datetime(2024, 5, 2, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    assert end.tzinfo is not None


def test_a_naive_time_or_a_date_alone_means_utc(api: TestClient, service: _Service) -> None:
    body = {"from": "2024-05-01", "to": "2024-05-03T06:00:00"}
    r = api.post("/api/jobs/orders/backfill", json=body, headers=AUTH)
    assert r.status_code == 202 and r.json() == {"run_id": "run-b1"}
    assert service.calls[-1] == (
        "backfill",
        "orders",
        datetime(2024, 5, 1, tzinfo=UTC),
        datetime(2024, 5, 3, 6, tzinfo=UTC),
    )
    assert all(t.tzinfo is not None for t in service.calls[-1][2:])


@pytest.mark.parametrize(
    ("body", "loc", "type_"),
    [
        ({"to": "2024-05-02"}, ["body", "from"], "missing"),
        ({"from": "2024-05-01"}, ["body", "to"], "missing"),
        ({"from": "yesterday", "to": "2024-05-02"}, ["body", "from"], "value_error"),
        ({"from": "2024-05-01", "to": 1714608000}, ["body", "to"], "value_error"),
        ({"from": "2024-05-01", "to": "2024-05-02", "x": 1}, ["body", "x"], "extra_forbidden"),
    ],
)
def test_a_missing_or_bad_field_is_422_by_field_path(
    api: TestClient, service: _Service, body: dict[str, Any], loc: list[str], type_: str
) -> None:
    r = api.post("/api/jobs/orders/backfill", json=body, headers=AUTH)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert [(d["loc"], d["type"]) for d in detail] == [(loc, type_)]
    assert service.calls == []  # nothing reached the service


def test_a_bad_time_says_what_it_got(api: TestClient) -> None:
    r = api.post(
        "/api/jobs/orders/backfill", json={"from": "yesterday", "to": "2024-05-02"}, headers=AUTH
    )
    assert r.json()["detail"][0]["msg"] == (
        "Value error, not an ISO 8601 date or datetime: 'yesterday'"
    )


def test_backfill_of_an_unknown_job_is_404(api: TestClient) -> None:
    body = {"from": "2024-05-01", "to": "2024-05-02"}
    r = api.post("/api/jobs/ghost/backfill", json=body, headers=AUTH)
    assert r.status_code == 404 and r.json() == {"detail": "No job named 'ghost'"}


def test_a_refused_backfill_is_422_with_its_message(api: TestClient, service: _Service) -> None:
    service.refuse = "job orders writes with replace: use refresh"
    body = {"from": "2024-05-01", "to": "2024-05-02"}
    r = api.post("/api/jobs/orders/backfill", json=body, headers=AUTH)
    assert r.status_code == 422
    assert r.json() == {"detail": "job orders writes with replace: use refresh"}


def test_refresh_answers_202_with_the_run_id(api: TestClient, service: _Service) -> None:
    r = api.post("/api/jobs/orders/refresh", headers=AUTH)
    assert r.status_code == 202 and r.json() == {"run_id": "run-r1"}
    assert service.calls == [("refresh", "orders")]
    r = api.post("/api/jobs/ghost/refresh", headers=AUTH)
    assert r.status_code == 404 and r.json() == {"detail": "No job named 'ghost'"}


@pytest.mark.parametrize("path", ["/api/jobs/orders/backfill", "/api/jobs/orders/refresh"])
def test_both_need_the_token(api: TestClient, service: _Service, path: str) -> None:
    body = {"from": "2024-05-01", "to": "2024-05-02"}
    assert api.post(path, json=body).status_code == 401
    bad = {"Authorization": "Bearer wrong-token-000000"}
    assert api.post(path, json=body, headers=bad).status_code == 401
    assert service.calls == []
