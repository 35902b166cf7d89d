"""source.format against real servers on 127.0.0.1: a JSON lines export, a gzip'd CSV export
(application/gzip) and a gzip'd one by Content-Encoding, JSON lines paginated by a
`Next-Page` response header, secrets scrubbed from a table page; and CSV rows through the
engine's Stager (plain and for_each) into a real DuckDB file, landing with their types."""

from __future__ import annotations

import gzip
import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.kit.servers import serve_app
from tg_actors.attempts import Begin, Begun
from tg_actors.config.files import load_job_file
from tg_actors.engine.fanout import build_commit, extract_chains
from tg_actors.engine.sync import extract_and_stage
from tg_actors.errors import JobValidationError, SourceError
from tg_actors.jobs import HttpSource, JobSpec, parse_job
from tg_actors.runstate import Trigger
from tg_actors.sources.http import HttpSourceClient
from tg_actors.store.duckdb import DuckStore

ITEMS: list[dict[str, Any]] = [
    {"id": i, "name": f"item {i}", "price": i * 1.25} for i in range(1, 24)
]
SIZE = 5
CSV = (
    "sku,qty,price,day,note\n"
    + "".join(
        f"s{i},{i},{i * 0.5},2024-01-{i:02d},{'' if i % 2 else 'even'}\n" for i in range(1, 8)
    )
).encode()
NOW = datetime(2024, 6, 1, tzinfo=UTC)
_ticks = itertools.count()


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


async def export_jsonl(request: Request) -> Response:
    return Response(_jsonl(ITEMS), media_type="application/x-ndjson")


async def export_csv_gz(request: Request) -> Response:
    return Response(gzip.compress(CSV), media_type="application/gzip")


async def encoded_csv(request: Request) -> Response:
    headers = {"Content-Encoding": "gzip"}
    return Response(gzip.compress(CSV), media_type="text/csv", headers=headers)


async def paged_jsonl(request: Request) -> Response:
    after = int(request.query_params.get("after", 0))
    chunk = [item for item in ITEMS if item["id"] > after][:SIZE]
    last = chunk[-1]["id"] if chunk else None
    more = last is not None and last < ITEMS[-1]["id"]
    headers = {"Next-Page": f"/paged.jsonl?after={last}"} if more else {}
    return Response(_jsonl(chunk), media_type="application/jsonl", headers=headers)


async def echo_jsonl(request: Request) -> Response:
    """Echoes the Authorization header back in a record (a source that leaks its token)."""
    row = {
        "id": 1,
        "auth": request.headers.get("authorization"),
        "accept": request.headers["accept"],
    }
    return Response(_jsonl([row]), media_type="application/x-ndjson")


async def empty(request: Request) -> Response:
    return Response(b"", media_type="text/csv")


async def shop_csv(request: Request) -> Response:
    shop = int(request.path_params["shop"])
    return Response(
        f"sku,qty\na{shop},{shop}\nb{shop},{shop * 10}\n".encode(), media_type="text/csv"
    )


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    routes = [
        Route("/export.jsonl", export_jsonl),
        Route("/export.csv.gz", export_csv_gz),
        Route("/encoded.csv", encoded_csv),
        Route("/paged.jsonl", paged_jsonl),
        Route("/echo.jsonl", echo_jsonl),
        Route("/empty.csv", empty),
        Route("/shops/{shop}/stock.csv", shop_csv),
    ]
    with serve_app(Starlette(routes=routes)) as url:
        yield url


def source(**fields: Any) -> HttpSource:
    return HttpSource.model_validate({"max_tries": 1, **fields})


async def read(spec: HttpSource, env: dict[str, str] | None = None) -> list[Any]:
    return [page async for page in HttpSourceClient(spec, env=env or {}).pages()]


def rows(pages: list[Any]) -> list[dict[str, Any]]:
    assert all(page.records == [] for page in pages)  # table pages: no Python row objects
    return [row for page in pages if page.table is not None for row in page.table.to_pylist()]


async def test_a_json_lines_export_is_read_exactly(base: str) -> None:
    pages = await read(source(url=f"{base}/export.jsonl", format="jsonl"))
    assert len(pages) == 1 and pages[0].table.schema.field("price").type == "double"
    assert rows(pages) == ITEMS


@pytest.mark.parametrize("path", ["export.csv.gz", "encoded.csv"])
async def test_a_gzipped_csv_export_is_decoded(base: str, path: str) -> None:
    (page,) = await read(source(url=f"{base}/{path}", format="csv"))
    assert page.table.num_rows == 7
    assert page.table.to_pylist()[1] == {
        "sku": "s2",
        "qty": 2,
        "price": 1.0,
        "day": date(2024, 1, 2),
        "note": "even",
    }


async def test_paginated_jsonl_by_a_next_page_header(base: str) -> None:
    spec = source(
        url=f"{base}/paged.jsonl",
        format="jsonl",
        paginate={"type": "next_url", "header": "Next-Page"},
        expect_total=None,
    )
    pages = await read(spec)
    assert [page.table.num_rows for page in pages] == [5, 5, 5, 5, 3]
    assert rows(pages) == ITEMS
    assert pages[-1].checkpoint is None and pages[0].checkpoint is not None


async def test_the_loop_guard_sees_a_table_page_repeated(base: str) -> None:
    spec = source(url=f"{base}/export.jsonl", format="jsonl", paginate={"type": "page"})
    with pytest.raises(SourceError, match="same 23 records"):
        await read(spec)


async def test_an_empty_csv_body_is_a_page_of_no_records(base: str) -> None:
    (page,) = await read(source(url=f"{base}/empty.csv", format="csv"))
    assert page.table is not None and page.table.num_rows == 0


async def test_a_secret_echoed_into_a_table_page_is_scrubbed(base: str) -> None:
    spec = source(
        url=f"{base}/echo.jsonl", format="jsonl", headers={"Authorization": "Bearer ${TK}"}
    )
    (page,) = await read(spec, env={"TK": "s3cr3t-token-value"})
    assert page.table.to_pylist() == [
        {
            "id": 1,
            "auth": "Bearer ***",
            "accept": "application/jsonl, application/x-ndjson, application/json;q=0.5",
        }
    ]


def test_records_with_jsonl_or_csv_is_an_error_naming_source_records() -> None:
    job = {
        "name": "x",
        "source": {"url": "https://api.example.com/x.csv", "format": "csv", "records": "$.a"},
        "destination": {"table": "x"},
    }
    with pytest.raises(JobValidationError, match=r"source\.records"):
        parse_job(job, "x.yaml")


def _job(source: dict[str, Any], table: str) -> JobSpec:
    return parse_job(
        {"name": table, "source": {"max_tries": 1, **source}, "destination": {"table": table}},
        f"{table}.yaml",
    )


def _begin(store: DuckStore, spec: JobSpec) -> tuple[str, Begun]:
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=next(_ticks))
    run_id = store.create_run(spec.name, when, Trigger.MANUAL)
    assert run_id is not None
    begin = Begin(run_id, job=spec.name, incremental=True, positioned=True)
    (begun,) = store.begin_attempts([begin], "engine-1")
    assert isinstance(begun, Begun), begun
    return run_id, begun


async def test_csv_rows_land_in_duckdb_with_their_types(base: str, tmp_path: Path) -> None:
    spec = _job(
        {
            "url": f"{base}/export.csv.gz",
            "format": "csv",
            "columns": {"sku": "VARCHAR", "qty": "BIGINT", "price": "DECIMAL(10,2)", "day": "DATE"},
            "incremental": {"cursor_field": "day", "param": "since"},
        },
        "stock",
    )
    with DuckStore(tmp_path / "t.duckdb") as store:
        run_id, begun = _begin(store, spec)

        async def stage(table: Any, checkpoint: Any, pages: int) -> None:
            store.stage_batch(run_id, table, checkpoint=checkpoint, pages=pages)

        result = await extract_and_stage(spec, stage, env={})
        assert store.commit_run(build_commit(spec, run_id, None, begun, result)) == 7
        types = store.query(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'stock' AND column_name NOT LIKE '\\_%' ESCAPE '\\'"
            " ORDER BY ordinal_position"
        )
        landed = store.query("SELECT sku, qty, price, day FROM main.stock ORDER BY qty")
    assert types == [
        ("sku", "VARCHAR"),
        ("qty", "BIGINT"),
        ("price", "DECIMAL(10,2)"),
        ("day", "DATE"),
    ]
    assert landed[0][0] == "s1" and landed[0][1] == 1 and float(landed[0][2]) == 0.5
    assert [r[3] for r in landed] == [date(2024, 1, i) for i in range(1, 8)]
    assert result.cursor is not None and result.cursor.startswith("2024-01-07")


async def test_for_each_csv_pages_land_through_the_chain_stager(base: str, tmp_path: Path) -> None:
    spec = _job(
        {
            "url": f"{base}/shops/{{shop}}/stock.csv",
            "format": "csv",
            "for_each": {"values": [{"shop": s} for s in (1, 2, 3)], "include": ["shop"]},
        },
        "shops",
    )
    with DuckStore(tmp_path / "t.duckdb") as store:
        run_id, begun = _begin(store, spec)

        async def stage(table: Any, checkpoint: Any, pages: int) -> None:
            store.stage_batch(run_id, table, checkpoint=checkpoint, pages=pages)

        result = await extract_chains(spec, stage, begun=begun, now=NOW, env={})
        assert store.commit_run(build_commit(spec, run_id, None, begun, result)) == 6
        landed = store.query("SELECT sku, qty, shop FROM main.shops ORDER BY qty")
    assert landed == [
        ("a1", 1, 1),
        ("a2", 2, 2),
        ("a3", 3, 3),
        ("b1", 10, 1),
        ("b2", 20, 2),
        ("b3", 30, 3),
    ]


JSONL_EXAMPLE = Path(__file__).resolve().parents[2] / "configs/examples/formats/jsonl_export.yaml"


async def test_the_shipped_jsonl_example_reads_a_local_export(base: str) -> None:
    """configs/examples/formats/jsonl_export.yaml against the paged JSON lines route here
    (its URL replaced; its incremental filter sent as it is)."""
    spec = load_job_file(JSONL_EXAMPLE)
    local = spec.source.model_copy(update={"url": f"{base}/paged.jsonl"})
    pages = [
        page
        async for page in HttpSourceClient(local, env={"EXAMPLE_TOKEN": "example-token"}).pages()
    ]
    assert rows(pages) == ITEMS
