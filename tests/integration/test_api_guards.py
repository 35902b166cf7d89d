"""The Serve app over real HTTP, for what issue 12 added: cycles of `triggers.after` refused
when a job is saved (422, the cycle spelled out, nothing stored)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.helpers import running_system

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]
TOKEN = "guards-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    from tg_actors import runtime

    tmp = tmp_path_factory.mktemp("api_guards")
    port = free_port()
    with running_system(tmp, f"t_{uuid.uuid4().hex[:8]}", engines=1) as rt:
        rt.settings = rt.settings.model_copy(update={"port": port, "api_token": TOKEN})
        runtime.start_serve(rt)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client


def test_a_cycle_of_triggers_after_is_422_spelled_out_and_nothing_stored(
    api: httpx.Client,
) -> None:
    def job(name: str, *after: str) -> dict[str, Any]:
        return {
            "name": name,
            "triggers": {"after": list(after)},
            "source": {"url": "http://127.0.0.1:9/x"},
            "destination": {"table": name},
        }

    assert api.put("/api/jobs/cyc_a", json=job("cyc_a", "cyc_c"), headers=AUTH).status_code == 201
    assert api.put("/api/jobs/cyc_b", json=job("cyc_b", "cyc_a"), headers=AUTH).status_code == 201
    try:
        # cyc_c after cyc_b closes cyc_c -> cyc_a -> cyc_b -> cyc_c: refused, by PUT and validate
        for path in ("/api/jobs/cyc_c", "/api/jobs/cyc_c/validate"):
            method = "PUT" if path.endswith("cyc_c") else "POST"
            body = job("cyc_c", "other", "cyc_b")
            response = api.request(method, path, json=body, headers=AUTH)
            assert response.status_code == 422, response.text
            [detail] = response.json()["detail"]
            assert detail["loc"] == ["body", "triggers", "after", "1"]
            assert "cyc_c -> cyc_a -> cyc_b -> cyc_c" in detail["msg"], detail
        assert api.get("/api/jobs/cyc_c", headers=AUTH).status_code == 404
        # a job after itself: the field error
        response = api.put("/api/jobs/cyc_self", json=job("cyc_self", "cyc_self"), headers=AUTH)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "triggers", "after", "0"]
        assert api.get("/api/jobs/cyc_self", headers=AUTH).status_code == 404
        # re-saving a job of the chain unchanged is no cycle; closing it from the other end is
        assert (
            api.put("/api/jobs/cyc_b", json=job("cyc_b", "cyc_a"), headers=AUTH).status_code == 200
        )
        response = api.put("/api/jobs/cyc_a", json=job("cyc_a", "cyc_b"), headers=AUTH)
        assert response.status_code == 422
        assert "cyc_a -> cyc_b -> cyc_a" in response.json()["detail"][0]["msg"]
        stored = api.get("/api/jobs/cyc_a", headers=AUTH).json()
        assert stored["triggers"]["after"] == ["cyc_c"]  # the refused change stored nothing
    finally:
        for name in ("cyc_a", "cyc_b"):
            api.delete(f"/api/jobs/{name}", headers=AUTH)
