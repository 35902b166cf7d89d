"""Data-path drills of issue 12 against real parts: a real DuckDB file, a real HTTP server
on 127.0.0.1 (or httpx.MockTransport for edge cases).

- #1  a batch whose pages cannot be concatenated is staged part by part, each part with the
      checkpoint that is true for it: an attempt cut off between parts resumes exactly;
- #12 a `replace` run with zero rows leaves the table existing and empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.kit.servers import serve_app
from tests.kit.stepclock import T0, Clock
from tg_actors.attempts import Commit, Resume
from tg_actors.engine import sync
from tg_actors.engine.sync import extract_and_stage
from tg_actors.jobs import JobSpec, parse_job
from tg_actors.store.duckdb import DuckStore

# -- #1: parts of a batch, each staged with its own checkpoint -----------------------------

PER_PAGE = 2
# the type of `v` per page: batches of 2 pages (checkpoint_rows 4); pages 3+4 and 5+6 cannot
# be concatenated in Arrow (int64 vs string), so each of those batches is staged in 2 parts
KINDS = ["int", "int", "int", "str", "str", "int", "int"]
ROWS = PER_PAGE * len(KINDS)


def mixed_pages_app() -> Starlette:
    async def items(request: Request) -> JSONResponse:
        page = int(request.query_params.get("page", "1"))
        if page > len(KINDS):
            return JSONResponse({"data": []})
        first = (page - 1) * PER_PAGE + 1
        kind = KINDS[page - 1]
        data = [
            {"id": i, "v": i if kind == "int" else f"s{i}"} for i in range(first, first + PER_PAGE)
        ]
        return JSONResponse({"data": data})

    return Starlette(routes=[Route("/items", items)])


@pytest.fixture(scope="module")
def mixed_api() -> Iterator[str]:
    with serve_app(mixed_pages_app()) as url:
        yield url


class Cut(Exception):
    """The engine died before this stage call landed."""


def job(url: str, write: str = "append") -> JobSpec:
    return parse_job(
        {
            "name": "mixed",
            "source": {
                "url": f"{url}/items",
                "records": "$.data",
                "paginate": {"type": "page", "param": "page"},
                "checkpoint_rows": 4,
                "concurrency": 1,
            },
            "destination": {"table": "mixed", "write": write, "widen_to_varchar": True},
        }
    )


def stager(store: DuckStore, run_id: str, calls: list[Any], cut_at: int | None) -> sync.Stage:
    """The engine's stage: DuckStore.stage_batch as sync_engine calls it; call `cut_at`
    (1-based) never lands."""

    async def stage(table: pa.Table, checkpoint: dict[str, Any] | None, pages: int) -> None:
        calls.append(checkpoint)
        if cut_at is not None and len(calls) == cut_at:
            raise Cut(f"stage call {cut_at}")
        store.stage_batch(
            run_id,
            table,
            checkpoint,
            pages if checkpoint is not None else None,
            widen_to_varchar=True,
            destination="mixed",
        )

    return stage


@pytest.mark.parametrize("cut_at", range(1, 7))
async def test_an_attempt_cut_between_the_parts_of_a_batch_resumes_with_exact_rows(
    tmp_path: Path, mixed_api: str, cut_at: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync.Batch, "SECONDS", 3600.0)  # batches by rows only: deterministic
    spec = job(mixed_api)
    with DuckStore(tmp_path / "parts.duckdb", clock=Clock()) as store:
        run_id = store.create_run("mixed", T0, "manual")
        assert run_id is not None
        store.update_run(run_id, state="running")
        calls: list[Any] = []
        with pytest.raises(Cut):
            await extract_and_stage(spec, stager(store, run_id, calls, cut_at))
        assert len(calls) == cut_at

        # the next attempt, as begin_attempts starts it: from the checkpoint, or afresh
        saved = store.checkpoint(run_id)
        if saved is None:
            store.discard_run(run_id)
        resume = None if saved is None else Resume(**saved)
        again: list[Any] = []
        result = await extract_and_stage(spec, stager(store, run_id, again, None), resume=resume)
        loaded = store.commit_run(
            Commit(run_id, table="mixed", write="append", pages=result.pages, widen_to_varchar=True)
        )
        ids = [r[0] for r in store.query("SELECT id FROM mixed ORDER BY id")]
        assert ids == list(range(1, ROWS + 1))  # every row once: none lost, none doubled
        assert loaded == result.rows == ROWS
        assert result.pages == len(KINDS) + 1  # the empty page that ends pagination counts


async def test_every_part_of_an_unconcatenable_batch_carries_its_own_checkpoint(
    tmp_path: Path, mixed_api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync.Batch, "SECONDS", 3600.0)
    with DuckStore(tmp_path / "parts.duckdb", clock=Clock()) as store:
        run_id = store.create_run("mixed", T0, "manual")
        assert run_id is not None
        store.update_run(run_id, state="running")
        calls: list[Any] = []
        await extract_and_stage(job(mixed_api), stager(store, run_id, calls, None))
        pages = [None if c["source"] is None else c["source"]["page"] for c in calls]
        # batches (1+2), (3|4), (5|6), (7+end): parts 3 and 5 carry their own page
        assert pages == [2, 3, 4, 5, 6, None]


# -- #12: replace with zero rows -----------------------------------------------------------


def new_run(store: DuckStore, minute: int) -> str:
    run_id = store.create_run("r", T0 + timedelta(minutes=minute), "manual")
    assert run_id is not None
    return run_id


def test_replace_with_zero_rows_empties_the_table(tmp_path: Path) -> None:
    path = tmp_path / "replace.duckdb"
    with DuckStore(path, clock=Clock()) as store:
        first = new_run(store, 0)
        store.stage_batch(first, pa.table({"id": [1, 2, 3]}))
        assert store.commit_run(Commit(first, table="r", write="replace", pages=1)) == 3
        empty = new_run(store, 1)
        assert store.commit_run(Commit(empty, table="r", write="replace", pages=1)) == 0
        assert store.query("SELECT count(*) FROM r") == [(0,)]  # the run's rows: none
        assert [t["name"] for t in store.list_tables()] == ["r"]  # the table stays
        assert store.get_run(empty)["state"] == "succeeded"  # type: ignore[index]
    with DuckStore(path) as again:  # committed: still empty after a reopen
        assert again.query("SELECT count(*) FROM r") == [(0,)]


def test_replace_with_an_empty_batch_of_known_columns(tmp_path: Path) -> None:
    with DuckStore(tmp_path / "replace.duckdb", clock=Clock()) as store:
        first = new_run(store, 0)
        store.commit_run(
            Commit(first, table="r", write="replace", pages=1, batch=pa.table({"id": [7]}))
        )
        empty = new_run(store, 1)
        none = pa.table({"id": pa.array([], pa.int64())})
        assert store.commit_run(Commit(empty, table="r", write="replace", pages=1, batch=none)) == 0
        assert store.query("SELECT count(*) FROM r") == [(0,)]
        # no table yet, but the columns are known: an empty table is created
        fresh = new_run(store, 2)
        assert (
            store.commit_run(Commit(fresh, table="fresh", write="replace", pages=1, batch=none))
            == 0
        )
        assert store.query("SELECT count(*) FROM fresh") == [(0,)]
        # nothing known: nothing to create, and that is fine
        bare = new_run(store, 3)
        assert store.commit_run(Commit(bare, table="bare", write="replace", pages=0)) == 0
        assert "bare" not in [t["name"] for t in store.list_tables()]


def test_append_and_merge_with_zero_rows_leave_the_table(tmp_path: Path) -> None:
    with DuckStore(tmp_path / "replace.duckdb", clock=Clock()) as store:
        first = new_run(store, 0)
        store.stage_batch(first, pa.table({"id": [1, 2]}))
        store.commit_run(Commit(first, table="r", write="append", pages=1))
        for minute, write in ((1, "append"), (2, "merge")):
            run = new_run(store, minute)
            assert (
                store.commit_run(Commit(run, table="r", write=write, primary_key=["id"], pages=1))
                == 0
            )
        assert store.query("SELECT count(*) FROM r") == [(2,)]


# -- #13: a 200 page without the records path --------------------------------------------


def records_app(third: dict[str, Any]) -> Starlette:
    """Pages 1 and 2 of {"data": [...]}, then `third` as page 3 (status 200), then []."""

    async def items(request: Request) -> JSONResponse:
        page = int(request.query_params.get("page", "1"))
        if page == 3:
            return JSONResponse(third)
        if page > 3:
            return JSONResponse({"data": []})
        return JSONResponse({"data": [{"id": page * 10 + i} for i in range(2)]})

    return Starlette(routes=[Route("/items", items)])


def paged_source(url: str) -> Any:
    from tg_actors.jobs import HttpSource

    return HttpSource.model_validate(
        {
            "url": f"{url}/items?api_key=s3cr3t-key-value",
            "records": "$.data",
            "paginate": {"type": "page", "param": "page"},
            "concurrency": 1,
        }
    )


async def test_a_page_without_the_records_path_fails_naming_the_path_and_page() -> None:
    from tg_actors.errors import SourceError
    from tg_actors.sources.http import HttpSourceClient

    with serve_app(records_app({"error": "overloaded, try later"})) as url:
        client = HttpSourceClient(paged_source(url))
        seen: list[int] = []
        with pytest.raises(SourceError) as caught:
            async for page in client.pages():
                seen.append(page.number)  # noqa: PERF401  (kept up to the failure)
    message = str(caught.value)
    assert seen == [1, 2]  # no "empty page" that would end pagination as a success
    assert message.startswith(f"GET {url}/items?api_key=***&page=3: page 3: records path")
    assert "'$.data' not found in the response" in message
    assert "overloaded, try later" in message and "s3cr3t" not in message
    assert "s3cr3t" not in (caught.value.url or "")


async def test_an_explicit_empty_list_still_ends_pagination() -> None:
    from tg_actors.sources.http import HttpSourceClient

    with serve_app(records_app({"data": []})) as url:
        pages = [page async for page in HttpSourceClient(paged_source(url)).pages()]
    assert [p.number for p in pages] == [1, 2, 3] and pages[-1].records == []
    assert sum(len(p.records) for p in pages) == 4
