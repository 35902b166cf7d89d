"""POST /api/sql over real HTTP through the Serve app, every actor running: a synced table
queried as JSON, Arrow, CSV and Parquet (equal to the Database's own read), tg.jobs masked,
401 without the token, 422 for a refused statement, 408 at the timeout, 429 past
TG_SQL_CONCURRENCY, and a stream the client leaves early frees its slot."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import ray

from tests.kit.ray import DEMO_ROWS, poll_until, serving_demo
from tg_actors.settings import Settings

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]
TOKEN = "sql-token-123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
ROWS = DEMO_ROWS
CONCURRENCY = Settings.model_fields["sql_concurrency"].default  # the session's Ray has these


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    tmp = tmp_path_factory.mktemp("sql")
    with serving_demo(tmp, TOKEN) as (url, rt):
        yield url, rt


@pytest.fixture(scope="module")
def api(served: tuple[str, Any]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0], timeout=60) as client:
        yield client


def sql(api: httpx.Client, body: dict[str, Any], accept: str | None = None) -> httpx.Response:
    headers = {**AUTH, **({"Accept": accept} if accept else {})}
    return api.post("/api/sql", json=body, headers=headers)


def direct(rt: Any, query: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = ray.get(rt.db.query.remote(query))
    return rows


def test_json_equals_the_database_s_own_read(api: httpx.Client, served: tuple[str, Any]) -> None:
    query = "SELECT count(*) AS n, sum(id) AS ids FROM demo"
    response = sql(api, {"sql": query})
    assert response.status_code == 200
    body = response.json()
    assert body["rows"] == [list(direct(served[1], query)[0])] and body["rows"][0][0] == ROWS
    assert body["columns"] == [{"name": "n", "type": "BIGINT"}, {"name": "ids", "type": "HUGEINT"}]
    assert body["row_count"] == 1 and body["truncated"] is False and body["elapsed_ms"] > 0
    some = sql(api, {"sql": "SELECT id FROM demo WHERE id > ? ORDER BY id", "params": [10]})
    assert some.json()["rows"][:2] == [[11], [12]]
    runs = sql(api, {"sql": "SELECT job, state, rows_loaded FROM tg.runs"}).json()["rows"]
    assert runs == [["demo", "succeeded", ROWS]]


@pytest.mark.parametrize(
    ("accept", "read"),
    [
        (ARROW, lambda data: pa.ipc.open_stream(data).read_all()),
        (PARQUET, lambda data: pq.read_table(io.BytesIO(data))),
        ("text/csv", lambda data: pa_csv.read_csv(io.BytesIO(data))),
    ],
)
def test_streams_read_back_as_the_database_s_own_read(
    api: httpx.Client, served: tuple[str, Any], accept: str, read: Any
) -> None:
    query = "SELECT id FROM demo ORDER BY id"
    response = sql(api, {"sql": query}, accept)
    assert response.status_code == 200 and response.headers["content-type"].startswith(accept)
    table = read(response.content)
    assert table.column("id").to_pylist() == [r[0] for r in direct(served[1], query)]


def test_a_large_result_streams_in_batches(api: httpx.Client) -> None:
    n = 3_000_000
    with api.stream(
        "POST", "/api/sql", json={"sql": f"SELECT range AS i FROM range({n})"},
        headers={**AUTH, "Accept": ARROW},
    ) as response:  # fmt: skip
        assert response.status_code == 200
        chunks = [len(chunk) for chunk in response.iter_raw()]
    assert len(chunks) > 10  # batch by batch, not one body
    assert sum(chunks) > n * 8


def test_tg_jobs_shows_secrets_masked(api: httpx.Client, served: tuple[str, Any]) -> None:
    job = {
        "name": "secretive",
        "source": {
            "url": "http://127.0.0.1:9/x",
            "auth": {"type": "bearer", "token": "${SOME_TOKEN}"},
        },
        "destination": {"table": "secretive"},
    }
    assert api.put("/api/jobs/secretive", json=job, headers=AUTH).status_code == 201
    query = "SELECT spec FROM tg.jobs WHERE name = 'secretive'"
    ((spec,),) = sql(api, {"sql": query}).json()["rows"]
    assert '"token": "***"' in spec and "SOME_TOKEN" not in spec
    assert "${SOME_TOKEN}" in direct(served[1], query)[0][0]  # the table keeps the reference


def test_the_token_is_required(api: httpx.Client) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-wrong-wrong"}):
        response = api.post("/api/sql", json={"sql": "SELECT 1"}, headers=headers)
        assert response.status_code == 401


def test_refused_and_failing_statements_are_422_and_change_nothing(
    api: httpx.Client, served: tuple[str, Any]
) -> None:
    for query, why in [
        ("DELETE FROM demo", "DELETE is not read-only"),
        ("COPY demo TO '/tmp/demo.csv'", "COPY reads or writes files"),
        ("ATTACH '/tmp/x.duckdb'", "ATTACH"),
        ("INSTALL httpfs", "INSTALL and LOAD"),
        ("SET threads = 1", "SET, RESET and USE"),
        ("SELECT * FROM read_csv('/etc/passwd')", "calls read_csv()"),
        ("SELECT * FROM read_json('http://127.0.0.1:9/x')", "calls read_json()"),
        ("SELECT 1; DROP TABLE demo", "holds 2 statements"),
        ("SELECT nope FROM demo", 'Referenced column "nope" not found'),
    ]:
        for accept in (None, ARROW):
            response = sql(api, {"sql": query}, accept)
            assert response.status_code == 422, (query, response.text)
            assert why in response.json()["detail"][0]["msg"]
    assert direct(served[1], "SELECT count(*) FROM demo") == [(ROWS,)]


def test_timeout_is_408(api: httpx.Client) -> None:
    began = time.monotonic()
    response = sql(api, {"sql": "SELECT sum(sleep_ms(100)) FROM range(1000)", "timeout": 0.5})
    assert response.status_code == 408 and "interrupted after 0.5s" in response.json()["detail"]
    assert time.monotonic() - began < 10


def test_past_the_concurrency_limit_429_and_a_left_stream_frees_its_slot(
    api: httpx.Client, served: tuple[str, Any]
) -> None:
    # a client that reads one chunk of a long stream and goes away
    with httpx.Client(base_url=served[0], timeout=60) as gone:
        body = {"sql": "SELECT a.range FROM range(100000000) a"}
        with gone.stream("POST", "/api/sql", json=body, headers={**AUTH, "Accept": ARROW}) as r:
            assert r.status_code == 200
            next(r.iter_raw())

    def sleeper(_: int) -> int:
        with httpx.Client(base_url=served[0], timeout=60) as client:
            return sql(client, {"sql": "SELECT sleep_ms(3000) AS s"}).status_code

    def all_slots_free() -> bool | None:  # every slot taken by a sleeper at once, none 429
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            codes = list(pool.map(sleeper, range(CONCURRENCY)))
        return True if codes == [200] * CONCURRENCY else None

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        held = [pool.submit(sleeper, i) for i in range(CONCURRENCY)]
        time.sleep(1.0)
        busy = sql(api, {"sql": "SELECT 1"})
        assert busy.status_code == 429 and "TG_SQL_CONCURRENCY" in busy.json()["detail"]
        assert [f.result() for f in held] == [200] * CONCURRENCY
    poll_until("every query slot free again", all_slots_free, 60, every=0.5)


def test_openapi_lists_the_route(api: httpx.Client) -> None:
    spec = api.get("/api/openapi.json", headers=AUTH).json()
    route = spec["paths"]["/api/sql"]["post"]
    assert {"200", "408", "422", "429"} <= set(route["responses"])
    assert ARROW in route["responses"]["200"]["content"]
