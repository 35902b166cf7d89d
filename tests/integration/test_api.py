"""The Serve app over real HTTP: every route of the backbone, auth, errors, masking."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from tests.kit.cli import free_port
from tests.kit.ray import serving, write_demo_job

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]
TOKEN = "test-token-1234567"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Any]]:
    """One system with the Serve app for the module: (a client of the API, its Runtime)."""

    tmp = tmp_path_factory.mktemp("api")
    port = free_port()
    write_demo_job(tmp / "configs", port)  # the demo source the Serve app itself mounts
    with serving(tmp, TOKEN, port=port) as (url, rt):
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, rt


@pytest.fixture(scope="module")
def api(served: tuple[httpx.Client, Any]) -> httpx.Client:
    return served[0]


def wait_run(api: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = api.get(f"/api/runs/{run_id}", headers=AUTH).json()
        if run["state"] in ("succeeded", "failed", "cancelled"):
            return run  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise TimeoutError(run_id)


def test_health_is_public(api: httpx.Client) -> None:
    response = api.get("/api/health")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ok"
    assert body["components"] == {
        "broker": "alive",
        "database": "alive",
        "config_manager": "alive",
        "scheduler": "alive",
        "engines": "alive",
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/jobs"),
        ("GET", "/api/jobs/demo"),
        ("PUT", "/api/jobs/x"),
        ("DELETE", "/api/jobs/demo"),
        ("POST", "/api/jobs/demo/pause"),
        ("POST", "/api/jobs/demo/runs"),
        ("GET", "/api/runs"),
        ("GET", "/api/tables"),
    ],
)
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}]
)
def test_token_required(api: httpx.Client, method: str, path: str, headers: dict[str, str]) -> None:
    response = api.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "missing or invalid bearer token"}
    assert api.get("/api/jobs/demo", headers=AUTH).status_code == 200  # nothing changed


def test_trigger_run_and_read_it_back(api: httpx.Client) -> None:
    response = api.post("/api/jobs/demo/runs", headers=AUTH)
    assert response.status_code == 202
    run = wait_run(api, response.json()["run_id"])
    assert run["state"] == "succeeded" and run["rows_loaded"] == 2500 and run["trigger"] == "manual"
    assert set(run) >= {
        "run_id", "job", "state", "trigger", "attempt", "scheduled_for", "queued_at",
        "started_at", "finished_at", "rows_loaded", "pages", "error",
    }  # fmt: skip
    runs = api.get("/api/runs", params={"job": "demo", "limit": 5}, headers=AUTH).json()
    assert runs[0]["run_id"] == run["run_id"]
    assert api.get("/api/runs", params={"state": "failed"}, headers=AUTH).json() == []
    logs = api.get(f"/api/runs/{run['run_id']}/logs", headers=AUTH).json()
    assert logs and {"ts", "level", "message"} <= set(logs[0])
    tables = api.get("/api/tables", headers=AUTH).json()
    assert [t["name"] for t in tables] == ["demo"] and tables[0]["rows"] == 2500
    preview = api.get("/api/tables/demo", params={"limit": 3}, headers=AUTH).json()
    assert preview["columns"][0] == "id" and len(preview["rows"]) == 3
    jobs = api.get("/api/jobs", headers=AUTH).json()
    demo = next(j for j in jobs if j["name"] == "demo")
    assert set(demo) == {"name", "enabled", "paused", "schedule", "next_run_at", "last_run"}
    assert demo["last_run"]["state"] == "succeeded"


def test_put_get_pause_resume_delete(api: httpx.Client) -> None:
    job = {
        "name": "secretive",
        "schedule": {"interval": "1h"},
        "source": {
            "url": "http://127.0.0.1:9/x",
            "auth": {"type": "bearer", "token": "${SOME_TOKEN}"},
        },
        "destination": {"table": "secretive"},
    }
    created = api.put("/api/jobs/secretive", json=job, headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.json()["source"]["auth"]["token"] == "***"
    assert api.put("/api/jobs/secretive", json=job, headers=AUTH).status_code == 200
    got = api.get("/api/jobs/secretive", headers=AUTH).json()
    assert got["source"]["auth"]["token"] == "***" and "SOME_TOKEN" not in str(got)
    assert got["status"]["next_run_at"] is not None
    paused = api.post("/api/jobs/secretive/pause", headers=AUTH)
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert api.get("/api/jobs/secretive", headers=AUTH).json()["paused"] is True
    assert api.post("/api/jobs/secretive/resume", headers=AUTH).json()["paused"] is False
    assert api.delete("/api/jobs/secretive", headers=AUTH).status_code == 204
    assert api.get("/api/jobs/secretive", headers=AUTH).status_code == 404


def test_put_yaml_body(api: httpx.Client) -> None:
    text = "name: from_yaml\nsource: {url: 'http://127.0.0.1:9/x'}\ndestination: {table: t}\n"
    response = api.put(
        "/api/jobs/from_yaml",
        content=text,
        headers={**AUTH, "Content-Type": "application/yaml"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "from_yaml"
    api.delete("/api/jobs/from_yaml", headers=AUTH)


@pytest.mark.parametrize(
    ("body", "loc", "fragment"),
    [
        ({"source": {"url": "http://x", "methd": "GET"}, "destination": {"table": "t"}}, ["body", "source", "methd"], "unknown field"),
        ({"source": {"url": "http://x"}, "destination": {"table": "t", "write": "merge"}}, ["body", "destination"], "primary_key"),
        ({"name": "other", "source": {"url": "http://x"}, "destination": {"table": "t"}}, ["body", "name"], "does not match"),
    ],
)  # fmt: skip
def test_invalid_job_is_422_with_field_path_and_nothing_stored(
    api: httpx.Client, body: dict[str, Any], loc: list[str], fragment: str
) -> None:
    response = api.put("/api/jobs/bad_job", json=body, headers=AUTH)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert any(d["loc"] == loc and fragment in d["msg"] for d in detail), detail
    assert api.get("/api/jobs/bad_job", headers=AUTH).status_code == 404


def test_not_found(api: httpx.Client) -> None:
    for method, path in [
        ("GET", "/api/jobs/nope"),
        ("DELETE", "/api/jobs/nope"),
        ("POST", "/api/jobs/nope/pause"),
        ("POST", "/api/jobs/nope/runs"),
        ("GET", "/api/runs/nope"),
        ("GET", "/api/runs/nope/logs"),
        ("POST", "/api/runs/nope/cancel"),
        ("GET", "/api/tables/nope"),
    ]:
        response = api.request(method, path, headers=AUTH)
        assert response.status_code == 404, (method, path, response.text)
        assert "nope" in response.json()["detail"]


def test_openapi_and_ui_are_served(api: httpx.Client) -> None:
    assert api.get("/api/openapi.json").status_code == 401  # it needs the token too
    spec = api.get("/api/openapi.json", headers=AUTH).json()
    assert "/api/jobs/{name}" in spec["paths"] and "/api/events" in spec["paths"]
    assert api.get("/").status_code == 401  # the UI needs the token too
    page = api.get("/", headers=AUTH)
    assert page.status_code == 200 and "gradio" in page.text.lower()


def test_ui_sign_in_by_link_and_by_form(api: httpx.Client) -> None:
    base = str(api.base_url)
    with httpx.Client(base_url=base, timeout=30) as browser:
        login = browser.get("/", headers={"Accept": "text/html"}, follow_redirects=True)
        assert login.url.path == "/login" and 'name="token"' in login.text
        assert browser.post("/login", data={"token": "wrong"}).status_code == 401
        signed = browser.post("/login", data={"token": TOKEN, "next": "/"})
        assert signed.status_code == 303 and TOKEN not in signed.headers["set-cookie"]
        assert browser.get("/").status_code == 200
    with httpx.Client(base_url=base, timeout=30) as browser:
        link = browser.get(f"/?token={TOKEN}")
        assert link.status_code == 303 and link.headers["location"] == "/"
        assert browser.get("/").status_code == 200


def test_bodies_over_the_limit_get_413_and_store_nothing(api: httpx.Client) -> None:
    huge = b'{"name": "huge", "description": "' + b"x" * (2 << 20) + b'"}'
    response = api.put("/api/jobs/huge", content=huge, headers=AUTH)
    assert response.status_code == 413 and "limit" in response.json()["detail"]
    assert api.get("/api/jobs/huge", headers=AUTH).status_code == 404


def test_validate_route_checks_without_storing(api: httpx.Client) -> None:
    bad = {"name": "checked", "source": {"url": "http://127.0.0.1:1/x"}, "destination": {}}
    response = api.post("/api/jobs/checked/validate", json=bad, headers=AUTH)
    assert response.status_code == 422
    assert ["body", "destination", "table"] in [e["loc"] for e in response.json()["detail"]]
    good = {**bad, "destination": {"table": "checked"}}
    response = api.post("/api/jobs/checked/validate", json=good, headers=AUTH)
    assert response.status_code == 200 and response.json()["valid"] is True
    assert api.get("/api/jobs/checked", headers=AUTH).status_code == 404


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


def test_masked_secrets_round_trip_keeps_the_stored_reference(api: httpx.Client) -> None:
    job = {
        "name": "secretive",
        "source": {
            "url": "http://127.0.0.1:1/x",
            "auth": {"type": "bearer", "token": "${SHOP_TOKEN}"},
        },
        "destination": {"table": "secretive"},
    }
    assert api.put("/api/jobs/secretive", json=job, headers=AUTH).status_code == 201
    shown = api.get("/api/jobs/secretive", headers=AUTH).json()
    assert shown["source"]["auth"]["token"] == "***"
    edited = dict(shown)  # the GET body as is: status, paused and origin are ignored
    edited["description"] = "edited in the UI"
    assert api.put("/api/jobs/secretive", json=edited, headers=AUTH).status_code == 200
    # what is stored is still the reference: the validate view shows it masked, and a `***`
    # where no secret was stored is refused by field path
    assert api.get("/api/jobs/secretive", headers=AUTH).json()["description"] == "edited in the UI"
    assert api.get("/api/jobs/secretive", headers=AUTH).json()["paused"] is False
    stray = {**edited, "source": {**edited["source"], "params": {"k": "***"}}}
    response = api.put("/api/jobs/secretive", json=stray, headers=AUTH)
    assert response.status_code == 422
    assert ["body", "source", "params", "k"] in [e["loc"] for e in response.json()["detail"]]
    api.delete("/api/jobs/secretive", headers=AUTH)


def test_events_stream_run_state_changes(served: tuple[httpx.Client, Any]) -> None:
    import json
    import threading

    from serve.events import GROUP
    from tg_actors.messages import TOPIC_STATUS

    api, rt = served
    assert api.get("/api/events").status_code == 401
    seen: list[dict[str, Any]] = []
    connected, done = threading.Event(), threading.Event()

    def listen() -> None:
        with api.stream("GET", "/api/events?job=demo", headers=AUTH, timeout=60) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith(": connected"):
                    connected.set()
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["state"] == "succeeded":
                        done.set()
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    # `: connected` comes only once the replica's consumer group is subscribed: no wait
    assert connected.wait(30), "the event stream did not open"
    assert GROUP in ray.get(rt.broker.stats.remote()).get(TOPIC_STATUS, {})
    run_id = api.post("/api/jobs/demo/runs", headers=AUTH).json()["run_id"]
    assert done.wait(60), seen
    states = [e["state"] for e in seen if e["run_id"] == run_id]
    assert states[0] == "queued" and states[-1] == "succeeded" and "running" in states
    assert {e["job"] for e in seen} == {"demo"}


def test_cors_is_off_by_default(api: httpx.Client) -> None:
    response = api.get("/api/jobs", headers={**AUTH, "Origin": "http://evil.example"})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


def test_ui_refresh_shows_jobs_and_runs_through_gradio_client(api: httpx.Client) -> None:
    from gradio_client import Client

    run_id = api.post("/api/jobs/demo/runs", headers=AUTH).json()["run_id"]
    wait_run(api, run_id)
    client = Client(str(api.base_url), verbose=False, headers=AUTH)
    jobs, runs = client.predict(api_name="/refresh")
    job_rows = {row[0]: row for row in jobs["data"]}
    assert job_rows["demo"][5] == "succeeded"  # last state column
    assert any(row[1] == "demo" and row[2] == "succeeded" for row in runs["data"])


def test_ui_engines_tab_shows_the_real_engines_through_gradio_client(api: httpx.Client) -> None:
    from gradio_client import Client

    client = Client(str(api.base_url), verbose=False, headers=AUTH)
    summary, table, count, _status = client.predict(api_name="/engines")
    assert count == 1
    assert summary.startswith("1 engine on 1 node · capacity")
    ((name, state, node_ip, *_rest),) = table["data"]
    assert (name, state, node_ip) == ("tg_engine_0", "up", "127.0.0.1")


def test_metrics_in_prometheus_text(api: httpx.Client) -> None:
    assert api.get("/metrics").status_code == 401
    run_id = api.post("/api/jobs/demo/runs", headers=AUTH).json()["run_id"]
    wait_run(api, run_id)
    done = ("tg_runs_finished_total", (("state", "succeeded"), ("tg_job", "demo")))
    deadline = time.monotonic() + 30  # the run ends in DuckDB a moment before it is counted
    while True:
        response = api.get("/metrics", headers=AUTH)
        assert response.status_code == 200
        assert response.headers["content-type"] == CONTENT_TYPE_LATEST
        found = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }
        if found.get(done, 0) >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert found[done] >= 1
    assert found["tg_runs", (("state", "succeeded"),)] >= 1  # the deprecated series
    assert found["tg_queue_depth", ()] == 0 and found["tg_engines", ()] == 1
    assert found["tg_trigger_lateness_seconds_bucket", (("le", "+Inf"),)] >= 1
    assert found["tg_rows_loaded_total", (("tg_job", "demo"),)] >= 2500
    assert found["tg_source_requests_total", (("code", "200"), ("tg_job", "demo"))] >= 1


def test_cancel_route_refuses_a_run_that_already_ended(api: httpx.Client) -> None:
    run_id = api.post("/api/jobs/demo/runs", headers=AUTH).json()["run_id"]
    assert wait_run(api, run_id)["state"] == "succeeded"
    response = api.post(f"/api/runs/{run_id}/cancel", headers=AUTH)
    assert response.status_code == 409 and "succeeded" in response.json()["detail"]


def test_engines_are_listed_and_scaled_over_http(api: httpx.Client) -> None:
    assert api.get("/api/engines").status_code == 401
    listed = api.get("/api/engines", headers=AUTH).json()
    assert listed["count"] == 1 and listed["nodes"] == 1
    (engine,) = listed["engines"]
    assert engine["name"] == "tg_engine_0" and engine["state"] == "up"
    assert engine["node_ip"] == "127.0.0.1" and engine["slots"] == listed["capacity"]
    try:
        grown = api.put("/api/engines", json={"count": 2}, headers=AUTH).json()
        assert grown["added"] == ["tg_engine_1"] and grown["count"] == 2
        assert grown["capacity"] == 2 * engine["slots"]
        run_id = api.post("/api/jobs/demo/runs", headers=AUTH).json()["run_id"]
        assert wait_run(api, run_id)["state"] == "succeeded"
    finally:
        shrunk = api.put("/api/engines", json={"count": 1, "grace_seconds": 30}, headers=AUTH)
    assert shrunk.status_code == 200, shrunk.text
    assert shrunk.json()["removed"] == ["tg_engine_1"] and shrunk.json()["count"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"count": 0}, "count"),
        ({"count": 257}, "count"),
        ({"count": "many"}, "count"),
        ({}, "count"),
        ({"count": 1, "grace_seconds": -1}, "grace_seconds"),
        ({"count": 1, "engines": 3}, "engines"),
    ],
)
def test_scaling_engines_refuses_bad_input_naming_the_field(
    api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    response = api.put("/api/engines", json=body, headers=AUTH)
    assert response.status_code == 422
    assert any(err["loc"][-1] == field for err in response.json()["detail"]), response.text
    assert api.get("/api/engines", headers=AUTH).json()["count"] == 1  # nothing changed


def test_tg_engines_command_lists_and_scales_through_the_api(
    api: httpx.Client, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tg_actors.cli.main import main

    monkeypatch.setenv("TG_API_TOKEN", TOKEN)
    url = str(api.base_url)
    assert main(["engines", "--url", url]) == 0
    assert "1 engine(s) on 1 node(s)" in capsys.readouterr().out
    assert main(["engines", "2", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "tg_engine_1" in out and "added: tg_engine_1" in out
    assert main(["engines", "1", "--grace", "30", "--url", url]) == 0
    assert "removed: tg_engine_1" in capsys.readouterr().out
    assert main(["engines", "0", "--url", url]) == 1
    assert "count: Input should be greater than or equal to 1" in capsys.readouterr().out
    monkeypatch.setenv("TG_API_TOKEN", "wrong-but-long-enough")
    assert main(["engines", "--url", url]) == 1
    assert "401" in capsys.readouterr().out


def _count_runs(api: httpx.Client) -> int:
    body = api.post("/api/sql", json={"sql": "SELECT count(*) AS n FROM tg.runs"}, headers=AUTH)
    return int(body.json()["rows"][0][0])


def test_preview_of_the_stored_job_reads_pages_and_writes_nothing(api: httpx.Client) -> None:
    assert (
        wait_run(api, api.post("/api/jobs/demo/runs", headers=AUTH).json()["run_id"])["state"]
        == "succeeded"
    )
    runs = _count_runs(api)
    response = api.post("/api/jobs/demo/preview", json={"pages": 2, "records": 3}, headers=AUTH)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["pages_read"] == 2 and answer["records"] == 2000
    assert answer["stop"]["reason"] == "page_limit"
    assert answer["next_request"]["url"].endswith("page=3")
    assert len(answer["sample"]["raw"]) == 3
    # the demo table exists: its columns are compared as a merge into it would be
    assert answer["table_exists"] is True
    assert {c["change"] for c in answer["columns"]} == {"unchanged"}
    assert _count_runs(api) == runs  # no run, no row
    assert api.post("/api/jobs/nope/preview", headers=AUTH).status_code == 404
    too_many = api.post("/api/jobs/demo/preview?pages=21", headers=AUTH)
    assert too_many.status_code == 422


def test_preview_of_an_unsaved_job_creates_no_table_and_no_job(api: httpx.Client) -> None:
    demo = api.get("/api/jobs/demo", headers=AUTH).json()
    url = demo["source"]["url"]
    body = f"""
name: preview_only
source:
  url: "{url.replace("/orders", "/customers/{{customer_id}}/orders")}"
  records: "$.data"
  for_each: {{sql: "SELECT 1 AS customer_id UNION ALL SELECT 2", include: [customer_id]}}
destination: {{table: preview_only_table}}
"""
    response = api.post(
        "/api/preview?pages=1", content=body, headers=AUTH | {"Content-Type": "application/yaml"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["chain"]["row"] == {"customer_id": 1}
    assert answer["table_exists"] is False
    assert all(c["change"] == "new column" for c in answer["columns"])
    assert api.get("/api/jobs/preview_only", headers=AUTH).status_code == 404
    tables = [t["name"] for t in api.get("/api/tables", headers=AUTH).json()]
    assert "preview_only_table" not in tables
    # a for_each over a table that is not there is a warning, not a crash
    wrapped = {
        "job": body.replace(
            "SELECT 1 AS customer_id UNION ALL SELECT 2",
            "SELECT id AS customer_id FROM no_such_table",
        ),
        "pages": 1,
    }
    answer = api.post("/api/preview", json=wrapped, headers=AUTH).json()
    assert answer["stop"]["reason"] == "no_rows"
    assert any("for_each.sql failed" in w for w in answer["warnings"])


def test_preview_of_a_bad_job_is_422_by_line_with_a_suggestion(api: httpx.Client) -> None:
    body = (
        "name: bad\nsource:\n  url: http://127.0.0.1:1/x\n  methd: GET\ndestination: {table: t}\n"
    )
    response = api.post(
        "/api/preview", content=body, headers=AUTH | {"Content-Type": "application/yaml"}
    )
    assert response.status_code == 422
    item = response.json()["detail"][0]
    assert item["loc"] == ["body", "source", "methd"] and (item["line"], item["column"]) == (4, 3)
    assert "did you mean" in item["msg"] and "method" in item["msg"]


def test_a_run_answers_its_check_results(api: httpx.Client) -> None:
    base = str(api.base_url).rstrip("/")
    job = {
        "name": "checked",
        "source": {
            "url": f"{base}/demo/orders",
            "params": {"per_page": 1000},
            "records": "$.data",
            "paginate": {"type": "page"},
        },
        "destination": {"table": "checked", "write": "merge", "primary_key": ["id"]},
        "checks": [
            {"type": "row_count", "min": 1},
            {"type": "unique", "columns": ["id"]},
            {"name": "never", "sql": "SELECT false FROM records LIMIT 1", "on_fail": "warn"},
        ],
    }
    assert api.put("/api/jobs/checked", json=job, headers=AUTH).status_code == 201
    run_id = api.post("/api/jobs/checked/runs", headers=AUTH).json()["run_id"]
    run = wait_run(api, run_id)
    assert run["state"] == "succeeded" and run["rows_loaded"] > 0
    assert run["rows_discarded"] == 0
    assert [(c["name"], c["passed"], c["on_fail"]) for c in run["checks"]] == [
        ("row_count_records", True, "fail"),
        ("unique_id", True, "fail"),
        ("never", False, "warn"),
    ]
    logs = api.get(f"/api/runs/{run_id}/logs", headers=AUTH).json()
    assert any("check never did not pass (warn)" in line["message"] for line in logs)
    assert api.delete("/api/jobs/checked", headers=AUTH).status_code == 204


def test_preview_says_what_the_schema_contract_would_do(api: httpx.Client) -> None:
    assert (
        wait_run(api, api.post("/api/jobs/demo/runs", headers=AUTH).json()["run_id"])["state"]
        == "succeeded"
    )
    demo = api.get("/api/jobs/demo", headers=AUTH).json()
    job = {
        **demo,
        "transform": {"sql": "SELECT *, 1 AS extra FROM records"},
        "destination": {**demo["destination"], "schema_contract": "freeze"},
    }
    job.pop("status", None)
    response = api.post("/api/preview?pages=1", json={"job": job}, headers=AUTH)
    assert response.status_code == 200, response.text
    answer = response.json()
    changes = {c["name"]: c["change"] for c in answer["columns"]}
    assert changes["extra"].startswith("new column; schema_contract freeze: the run would fail")
    assert changes["id"] == "unchanged"
    assert any("column extra" in w and "freeze" in w for w in answer["warnings"])


# -- commands through the broker (the `commands` topic, tg.commands) -----------------------


def commands_of(api: httpx.Client, job: str, limit: int = 50) -> list[dict[str, Any]]:
    response = api.get("/api/commands", params={"job": job, "limit": limit}, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_command_sent_again_with_its_key_is_applied_once(api: httpx.Client) -> None:
    key = {**AUTH, "Idempotency-Key": "trigger-demo-0001"}
    first = api.post("/api/jobs/demo/runs", headers=key)
    again = api.post("/api/jobs/demo/runs", headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()  # the same run, not a second one
    run_id = first.json()["run_id"]
    wait_run(api, run_id)
    runs = api.get("/api/runs", params={"job": "demo", "limit": 10_000}, headers=AUTH).json()
    assert [r["run_id"] for r in runs].count(run_id) == 1
    other = api.post("/api/jobs/demo/runs", headers={**AUTH, "Idempotency-Key": "trigger-demo-2"})
    assert other.json()["run_id"] != run_id  # another key, another run
    wait_run(api, other.json()["run_id"])
    # a refusal is answered the same way again, too: a delete of a job that is not there
    gone = {**AUTH, "Idempotency-Key": "delete-nope-1"}
    assert api.delete("/api/jobs/nope", headers=gone).status_code == 404
    assert api.delete("/api/jobs/nope", headers=gone).status_code == 404
    entries = {e["command_id"]: e for e in commands_of(api, "demo", 10_000)}
    assert entries["trigger-demo-0001"]["outcome"] == f"run {run_id}"
    # the key again with another request: refused, nothing applied, the first answer kept
    reused = api.post("/api/jobs/demo/pause", headers=key)
    assert reused.status_code == 422
    [problem] = reused.json()["detail"]  # the 422 shape every route declares
    assert problem["loc"] == ["header", "Idempotency-Key"] and "new key" in problem["msg"]
    assert api.get("/api/jobs/demo", headers=AUTH).json()["paused"] is False
    assert api.post("/api/jobs/demo/runs", headers=key).json()["run_id"] == run_id


def test_the_audit_log_names_each_command_who_sent_it_and_what_came_of_it(
    api: httpx.Client,
) -> None:
    job = {
        "name": "audited",
        "schedule": {"interval": "1h"},
        "source": {
            "url": "http://127.0.0.1:9/x",
            "auth": {"type": "bearer", "token": "${A_TOKEN}"},
        },
        "destination": {"table": "audited"},
    }
    assert api.put("/api/jobs/audited", json=job, headers=AUTH).status_code == 201
    assert api.put("/api/jobs/audited", json=job, headers=AUTH).status_code == 200
    assert api.post("/api/jobs/audited/pause", headers=AUTH).status_code == 200
    assert api.post("/api/jobs/audited/resume", headers=AUTH).status_code == 200
    bad = {**job, "source": {"url": 5}}
    refused = api.put("/api/jobs/audited", json=bad, headers=AUTH)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"][:2] == ["body", "source"]  # by field path
    assert api.delete("/api/jobs/audited", headers=AUTH).status_code == 204
    # the API's own commands are recorded within a second of their answer (many together)
    deadline = time.monotonic() + 5
    while True:
        entries = commands_of(api, "audited")
        if len(entries) == 6 and all(e["outcome"] for e in entries):
            break
        assert time.monotonic() < deadline, entries
        time.sleep(0.1)
    assert [(e["kind"], e["who"]) for e in entries] == [
        ("delete", "api"),
        ("upsert", "api"),
        ("resume", "api"),
        ("pause", "api"),
        ("upsert", "api"),
        ("upsert", "api"),
    ]
    outcomes = [e["outcome"] for e in entries]
    assert outcomes[0] == "deleted" and outcomes[2:] == ["resumed", "paused", "updated", "created"]
    assert outcomes[1].startswith("refused: JobValidationError")
    assert all(e["received_at"] and e["answered_at"] for e in entries)
    assert "A_TOKEN" not in str(entries)  # no body, no secret
    assert commands_of(api, "audited", 2) == entries[:2]


def test_an_idempotency_key_that_is_not_one_is_422_naming_the_header(api: httpx.Client) -> None:
    response = api.post("/api/jobs/demo/runs", headers={**AUTH, "Idempotency-Key": "a b/c"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert api.get("/api/commands", params={"limit": 0}, headers=AUTH).status_code == 422


def test_the_ui_s_commands_are_the_ui_s_in_the_audit_log(api: httpx.Client) -> None:
    from gradio_client import Client

    client = Client(str(api.base_url), verbose=False, headers=AUTH)
    status = client.predict("demo", api_name="/run_now")
    assert "demo" in str(status)
    newest = commands_of(api, "demo", 1)[0]
    assert (newest["kind"], newest["who"]) == ("trigger", "ui")
    assert newest["outcome"].startswith("run ")
    wait_run(api, newest["outcome"].split()[1])
