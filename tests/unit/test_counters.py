"""RunCounters (tg_actors/scheduler/counters.py): seeded once from Database.run_totals (a real
DuckDB file), then moved by run ends; and the engine's ResponseCodes transport counting a real
HTTP server's answers by status code."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.kit.servers import serve_app
from tg_actors.attempts import Commit
from tg_actors.engine.sync import ResponseCodes
from tg_actors.jobs import WriteMode
from tg_actors.runstate import RunState, Trigger
from tg_actors.scheduler.counters import RunCounters
from tg_actors.store.duckdb import DuckStore

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_run_ends_move_the_counters_by_job_and_state() -> None:
    counters = RunCounters(buckets=(1.0, 10.0))
    counters.succeeded("orders", 120, 0.5)
    counters.succeeded("orders", 30, 4.0)
    counters.succeeded("users", 7, None)  # duration unknown: counted, not observed
    counters.ended("orders", RunState.FAILED)
    counters.ended("orders", "cancelled")
    counters.ended("orders", RunState.RUNNING)  # not an end: ignored
    counters.requested("orders", {"200": 3, "429": 1})
    counters.requested("orders", {"200": 2})
    snap = counters.snapshot()
    assert snap["finished"] == [
        ["orders", "cancelled", 1],
        ["orders", "failed", 1],
        ["orders", "succeeded", 2],
        ["users", "succeeded", 1],
    ]
    assert snap["rows"] == [["orders", 150], ["users", 7]]
    assert snap["requests"] == [["orders", "200", 5], ["orders", "429", 1]]
    assert snap["durations"] == {
        "orders": {"buckets": [1.0, 10.0], "counts": [1, 2], "sum": 4.5, "count": 2}
    }


def test_the_seed_is_added_once_and_the_live_ends_on_top() -> None:
    totals = [
        {"job": "a", "state": "succeeded", "runs": 2, "rows": 50,
         "durations": {"buckets": [1.0, 10.0], "counts": [1, 2], "sum": 3.0, "count": 2}},
        {"job": "a", "state": "failed", "runs": 1, "rows": 0,
         "durations": {"buckets": [1.0, 10.0], "counts": [0, 0], "sum": 0.0, "count": 0}},
    ]  # fmt: skip
    counters = RunCounters(buckets=(1.0, 10.0))
    counters.seed(totals)
    counters.seed(totals)  # a boot tried again: not twice
    counters.succeeded("a", 5, 20.0)
    snap = counters.snapshot()
    assert snap["finished"] == [["a", "failed", 1], ["a", "succeeded", 3]]
    assert snap["rows"] == [["a", 55]]
    assert snap["durations"]["a"] == {
        "buckets": [1.0, 10.0], "counts": [1, 2], "sum": 23.0, "count": 3
    }  # fmt: skip


def test_the_store_aggregates_ended_runs_for_the_seed(tmp_path: Path) -> None:
    """One query over tg.runs: per job and ended state, runs, rows and the succeeded runs'
    durations in the given buckets; open runs are not in it."""
    now = [T0]
    store = DuckStore(tmp_path / "s.duckdb", clock=lambda: now[0])
    try:
        for job, start, end in (("a", 0, 0.5), ("a", 10, 13), ("b", 20, 50)):
            run_id = store.create_run(job, at(start), Trigger.MANUAL, state=RunState.RUNNING)
            assert run_id is not None
            store.update_run(
                run_id, expect_state=RunState.RUNNING, expect_attempt=1, started_at=at(start)
            )
            now[0] = at(end)
            store.commit_run(Commit(run_id, table=job, write=WriteMode.APPEND, pages=0))
        failed = store.create_run("a", at(60), Trigger.MANUAL, state=RunState.RUNNING)
        assert failed is not None
        store.fail_run(failed, expect_state=RunState.RUNNING, finished_at=at(61), error="x")
        cancelled = store.create_run("b", at(70), Trigger.MANUAL)
        assert cancelled is not None and store.cancel_run(cancelled)
        store.create_run("a", at(80), Trigger.MANUAL)  # queued: not ended, not counted
        totals = store.run_totals((1.0, 10.0))
    finally:
        store.close()
    assert [(t["job"], t["state"], t["runs"]) for t in totals] == [
        ("a", "failed", 1),
        ("a", "succeeded", 2),
        ("b", "cancelled", 1),
        ("b", "succeeded", 1),
    ]
    by = {(t["job"], t["state"]): t["durations"] for t in totals}
    assert by["a", "succeeded"] == {
        "buckets": [1.0, 10.0], "counts": [1, 2], "sum": 3.5, "count": 2
    }  # fmt: skip
    assert by["b", "succeeded"]["counts"] == [0, 0] and by["b", "succeeded"]["count"] == 1
    assert by["a", "failed"]["count"] == 0  # only succeeded runs are timed
    counters = RunCounters(buckets=(1.0, 10.0))
    counters.seed(totals)
    assert counters.snapshot()["finished"] == [
        ["a", "failed", 1], ["a", "succeeded", 2], ["b", "cancelled", 1], ["b", "succeeded", 1]
    ]  # fmt: skip


def codes_app() -> Starlette:
    async def answer(request: Request) -> JSONResponse:
        return JSONResponse({}, status_code=int(request.path_params["code"]))

    return Starlette(routes=[Route("/status/{code}", answer)])


def test_response_codes_count_each_answer_by_status_across_clients() -> None:
    """Each client closing it (one per chain of a fanned-out run) leaves it usable for the
    next, and the counts add up over all of them."""

    async def go(base: str) -> dict[str, int]:
        counted = ResponseCodes()
        for paths in (["200", "200", "404"], ["503", "200"]):
            async with httpx.AsyncClient(transport=counted) as client:
                for code in paths:
                    await client.get(f"{base}/status/{code}")
        return counted.codes

    with serve_app(codes_app()) as base:
        assert asyncio.run(go(base)) == {"200": 3, "404": 1, "503": 1}
