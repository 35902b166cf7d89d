"""Issue 19 #5: the OpenAPI document of the API (built without Ray: the routes' declarations
are what is checked; the answers themselves in tests/integration/test_api.py and the
schemathesis run of test_bad_input.py, which validates them against this document)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve.routes.api import build_api
from serve.service import ApiService

TOKEN = "openapi-test-token-0123"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    app = build_api(ApiService("unused"), TOKEN)
    with TestClient(app) as client:
        response = client.get("/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_a_bearer_security_scheme_is_declared(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes == {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "TG_API_TOKEN, or the token in `api_token` beside the database",
        }
    }


def test_every_route_but_health_requires_the_bearer_token(spec: dict[str, Any]) -> None:
    ops = operations(spec)
    assert len(ops) >= 24
    for method, path, op in ops:
        if path == "/api/health":
            assert "security" not in op and "401" not in op["responses"]
            continue
        assert op.get("security") == [{"bearer": []}], (method, path)
        assert "401" in op["responses"], (method, path)
        assert "503" in op["responses"], (method, path)


def test_every_answer_has_a_schema_that_is_not_a_free_form_object(
    spec: dict[str, Any],
) -> None:
    for method, path, op in operations(spec):
        codes = [c for c in ("200", "201", "202") if c in op["responses"]]
        if not codes:
            assert method == "delete" and "204" in op["responses"], (method, path)
            continue
        for code in codes:
            content = op["responses"][code]["content"]
            assert content, (method, path, code)
            for media, body in content.items():
                schema = resolve(spec, body["schema"])
                if schema.get("type") == "array":
                    schema = resolve(spec, schema["items"])
                if media == "application/json":
                    # a model of named fields, not `{}` or a bare `object`
                    assert schema.get("properties"), (method, path, code, schema)
                else:
                    assert schema.get("type") == "string", (method, path, media)


def test_errors_are_declared_where_they_can_happen(spec: dict[str, Any]) -> None:
    paths = spec["paths"]

    def codes(method: str, path: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert {"404", "422"} <= codes("post", "/api/jobs/{name}/runs")
    assert {"404", "409"} <= codes("post", "/api/runs/{run_id}/cancel")
    assert {"404"} <= codes("get", "/api/jobs/{name}") & codes("get", "/api/runs/{run_id}")
    assert {"404"} <= codes("get", "/api/tables/{name}") & codes("delete", "/api/jobs/{name}")
    assert {"201", "422"} <= codes("put", "/api/jobs/{name}")
    assert {"422"} <= codes("post", "/api/preview") & codes("post", "/api/sql")
    assert "503" in codes("get", "/api/health")
    invalid = paths["/api/jobs/{name}"]["put"]["responses"]["422"]["content"]
    body = resolve(spec, invalid["application/json"]["schema"])
    assert resolve(spec, body["properties"]["detail"]["items"])["required"] == [
        "loc",
        "msg",
        "type",
    ]


def test_events_are_documented_as_an_event_stream(spec: dict[str, Any]) -> None:
    content = spec["paths"]["/api/events"]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/event-stream"]
    assert content["text/event-stream"]["schema"]["type"] == "string"


def test_answer_models_allow_extra_fields(spec: dict[str, Any]) -> None:
    """A model never drops a field an answer has: each says additionalProperties."""
    for name in ("Run", "Job", "JobSummary", "Preview", "Engines", "Health", "SqlAnswer"):
        assert spec["components"]["schemas"][name]["additionalProperties"] is True, name


def test_the_token_is_still_required_by_the_routes() -> None:
    """The scheme documents; the check is the same (401 without the token, a health 503
    answers without one). No Ray here: a route that got past the token would fail."""
    app = build_api(ApiService("unused"), TOKEN)
    with TestClient(app, raise_server_exceptions=False) as client:
        for path in ("/api/jobs", "/api/runs", "/metrics", "/api/engines"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json() == {"detail": "missing or invalid bearer token"}
            wrong = client.get(path, headers={"Authorization": "Bearer wrong-token-xxxxxxxx"})
            assert wrong.status_code == 401, path
        basic = client.get("/api/jobs", headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401
