"""POST /api/sql through the real FastAPI app and the real Database class on a DuckDB file,
no Ray: the actor handle is a stand-in that calls the class (a coroutine per call, an async
iterator of awaitables for the generator, as Ray's ObjectRefGenerator is). Answers by
`Accept` read back with pyarrow equal a direct DuckDB read; errors by class and status."""

from __future__ import annotations

import asyncio
import inspect
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from serve import sql as serve_sql
from serve.formats import negotiate
from serve.routes.api import build_api
from serve.service import ApiService
from tg_actors.store.actor import Database

TOKEN = "unit-token-123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SQL = "SELECT id, 'n' || id AS name, id * 0.5 AS half FROM items ORDER BY id"


class _Refs:
    """What `.remote()` of an actor generator gives: each step an awaitable of a value."""

    def __init__(self, gen: AsyncIterator[Any]) -> None:
        self.gen = gen

    def __aiter__(self) -> _Refs:
        return self

    async def __anext__(self) -> Any:
        value = await anext(self.gen)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(value)
        return future


class _Method:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def options(self, **_: Any) -> _Method:
        return self

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        result = self.fn(*args, **kwargs)
        return _Refs(result) if inspect.isasyncgen(result) else result


class _Handle:
    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def __getattr__(self, name: str) -> _Method:
        return _Method(getattr(self.actor, name))


class _Service(ApiService):
    def __init__(self, db: Database) -> None:
        super().__init__("unit", cache_seconds=0)
        self.handle = _Handle(db)

    def _lookup(self, name: str) -> Any:
        return self.handle


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "api.duckdb"
    path.parent.mkdir()
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE items AS SELECT range AS id FROM range(200000)")
    return path


@pytest.fixture
async def db(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Database]:
    monkeypatch.setenv("TG_SQL_MAX_ROWS", "1000")
    monkeypatch.setenv("TG_SQL_CONCURRENCY", "2")
    database = Database(str(db_path), housekeeping_seconds=3600.0)
    yield database
    await database.close()


@pytest.fixture
async def api(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = build_api(_Service(db), TOKEN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def direct(db_path: Path) -> Iterator[pa.Table]:
    with duckdb.connect(":memory:") as con:
        con.execute("CREATE TABLE items AS SELECT range AS id FROM range(200000)")
        yield con.sql(SQL).to_arrow_table()


async def post(api: httpx.AsyncClient, body: dict[str, Any], accept: str | None = None) -> Any:
    headers = {**AUTH, **({"Accept": accept} if accept else {})}
    return await api.post("/api/sql", json=body, headers=headers)


async def test_json_by_default(api: httpx.AsyncClient, direct: pa.Table) -> None:
    response = await post(api, {"sql": SQL})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["columns"] == [
        {"name": "id", "type": "BIGINT"},
        {"name": "name", "type": "VARCHAR"},
        {"name": "half", "type": "DECIMAL(21,1)"},
    ]
    assert body["row_count"] == 1000 and body["truncated"] is True  # TG_SQL_MAX_ROWS
    assert body["rows"][:2] == [[0, "n0", 0.0], [1, "n1", 0.5]]
    assert body["rows"] == [
        [r["id"], r["name"], float(r["half"])] for r in direct.to_pylist()[:1000]
    ]
    small = await post(api, {"sql": "SELECT ? + 1 AS x", "params": [41], "limit": 5})
    assert small.json()["rows"] == [[42]] and small.json()["truncated"] is False


@pytest.mark.parametrize(
    ("accept", "read"),
    [
        ("application/vnd.apache.arrow.stream", lambda b: pa.ipc.open_stream(b).read_all()),
        ("application/vnd.apache.parquet", lambda b: pq.read_table(io.BytesIO(b))),
    ],
)
async def test_arrow_and_parquet_read_back_as_the_direct_read(
    api: httpx.AsyncClient, direct: pa.Table, accept: str, read: Any
) -> None:
    response = await post(api, {"sql": SQL}, accept)
    assert response.status_code == 200 and response.headers["content-type"] == accept
    table = read(response.content)
    assert table.num_rows == 200_000  # streams are whole: TG_SQL_MAX_ROWS is for JSON
    assert table.equals(direct)
    limited = read((await post(api, {"sql": SQL, "limit": 10}, accept)).content)
    assert limited.equals(direct.slice(0, 10))


async def test_csv_reads_back_and_nested_values_come_as_text(api: httpx.AsyncClient) -> None:
    response = await post(api, {"sql": SQL, "limit": 3}, "text/csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.splitlines() == [
        '"id","name","half"',
        '0,"n0",0.0',
        '1,"n1",0.5',
        '2,"n2",1.0',
    ]
    nested = await post(api, {"sql": "SELECT [1, 2] AS l, {'a': 1} AS s"}, "text/csv")
    back = pa_csv.read_csv(io.BytesIO(nested.content))
    assert back.to_pylist() == [{"l": "[1, 2]", "s": "{'a': 1}"}]


async def test_an_empty_result_still_has_its_columns(api: httpx.AsyncClient) -> None:
    sql = "SELECT id FROM items WHERE id < 0"
    arrow = await post(api, {"sql": sql}, "application/vnd.apache.arrow.stream")
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table.num_rows == 0 and table.column_names == ["id"]
    parquet = await post(api, {"sql": sql}, "application/vnd.apache.parquet")
    assert pq.read_table(io.BytesIO(parquet.content)).column_names == ["id"]


@pytest.mark.parametrize("accept", [None, "application/vnd.apache.arrow.stream", "text/csv"])
async def test_a_refused_statement_is_422_naming_why_whatever_the_format(
    api: httpx.AsyncClient, db: Database, accept: str | None
) -> None:
    for sql, why in [
        ("DELETE FROM items", "DELETE is not read-only"),
        ("SELECT * FROM read_csv('/etc/passwd')", "calls read_csv()"),
        ("SELECT 1; SELECT 2", "holds 2 statements"),
    ]:
        response = await post(api, {"sql": sql}, accept)
        assert response.status_code == 422, response.text
        ((detail,),) = [response.json()["detail"]]
        assert detail["loc"] == ["body", "sql"] and why in detail["msg"]
    assert await db.query("SELECT count(*) FROM items") == [(200_000,)]


async def test_duckdb_s_error_in_a_valid_read_is_422_with_its_message(
    api: httpx.AsyncClient,
) -> None:
    for accept in (None, "application/vnd.apache.parquet"):
        response = await post(api, {"sql": "SELECT nope FROM items"}, accept)
        assert response.status_code == 422
        assert 'Referenced column "nope" not found' in response.json()["detail"][0]["msg"]


async def test_timeout_is_408_and_concurrency_429(api: httpx.AsyncClient) -> None:
    slow = {"sql": "SELECT count(*) FROM range(1000000000) a, range(100000) b", "timeout": 0.3}
    response = await post(api, slow)
    assert response.status_code == 408 and "interrupted after 0.3s" in response.json()["detail"]
    sleeping = {"sql": "SELECT sleep_ms(1500) AS s"}
    held = [asyncio.create_task(post(api, sleeping)) for _ in range(2)]
    await asyncio.sleep(0.3)
    busy = await post(api, {"sql": "SELECT 1"})
    assert busy.status_code == 429 and "TG_SQL_CONCURRENCY" in busy.json()["detail"]
    assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
    assert (await post(api, {"sql": "SELECT 1 AS one"})).json()["rows"] == [[1]]


async def test_token_body_and_accept_are_checked(api: httpx.AsyncClient) -> None:
    assert (await api.post("/api/sql", json={"sql": "SELECT 1"})).status_code == 401
    wrong = {"Authorization": "Bearer wrong-token-0000000"}
    assert (await api.post("/api/sql", json={"sql": "SELECT 1"}, headers=wrong)).status_code == 401
    for body in ({}, {"sql": 1}, {"sql": "SELECT 1", "limit": -1}, {"sql": "x", "extra": 1}):
        assert (await post(api, body)).status_code == 422, body
    assert (await post(api, {"sql": "SELECT 1"}, "image/png")).status_code == 406
    spec = (await api.get("/api/openapi.json", headers=AUTH)).json()
    assert "post" in spec["paths"]["/api/sql"]
    assert "application/vnd.apache.arrow.stream" in str(spec["paths"]["/api/sql"])


async def test_a_stream_left_early_cancels_the_generator(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancelled: list[Any] = []
    monkeypatch.setattr(serve_sql.ray, "cancel", cancelled.append)
    handle = _Handle(db)
    first, batches = await serve_sql.open_batches(handle, SQL, [], None)
    assert first.num_rows == 0 and first.schema.names == ["id", "name", "half"]
    assert (await anext(batches)).num_rows > 0
    await batches.aclose()  # type: ignore[attr-defined]
    assert len(cancelled) == 1


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (None, "json"),
        ("", "json"),
        ("*/*", "json"),
        ("application/json", "json"),
        ("text/csv", "csv"),
        ("text/csv;q=0.5, application/vnd.apache.parquet", "parquet"),
        ("application/vnd.apache.arrow.stream;q=0.9, application/json;q=0.1", "arrow"),
        ("text/html, */*;q=0.8", "json"),
        ("application/x-parquet", "parquet"),
        ("image/png", None),
        ("text/csv;q=0", None),
    ],
)
def test_accept_picks_the_format(accept: str | None, fmt: str | None) -> None:
    assert negotiate(accept) == fmt
