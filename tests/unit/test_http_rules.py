"""Response rules (`source.rules`, first match wins) against real servers on 127.0.0.1:
`skip` (a for_each row whose child answers 404 ends, counted and named on the run), `retry`
(a 200 whose body says "rate limit"), `stop` (pagination ends, the run goes on), `fail` (the
run fails and is not retried); the default handling untouched without rules; a rule that
would drop every success refused by field path."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.kit.servers import serve_app
from tests.kit.states import FakeStates
from tg_actors.attempts import Begin, Begun
from tg_actors.engine.fanout import build_commit, extract_chains
from tg_actors.errors import JobValidationError, RuleFailed, SourceError
from tg_actors.jobs import HttpSource, parse_job
from tg_actors.messages import RunFinished
from tg_actors.runstate import RunState, Trigger
from tg_actors.scheduler.error_handler import ErrorHandler
from tg_actors.scheduler.states import StateManager, TrackedRun
from tg_actors.sources.http import HttpSourceClient
from tg_actors.store.actor import log_entry
from tg_actors.store.duckdb import DuckStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GONE = {3, 5}  # customers whose orders answer 404
HITS: dict[str, int] = {}


async def orders(request: Request) -> Response:
    customer = int(request.path_params["customer"])
    if customer in GONE:
        return JSONResponse({"detail": "no such customer"}, status_code=404)
    page = int(request.query_params.get("page", 1))
    rows = [{"id": customer * 100 + i, "customer": customer} for i in range(1, 4)]
    return JSONResponse({"data": rows if page == 1 else []})


async def busy(request: Request) -> Response:
    """A 200 saying "rate limit" for the first two calls, then the records."""
    HITS["busy"] = HITS.get("busy", 0) + 1
    if HITS["busy"] <= 2:
        return JSONResponse({"error": "rate limit exceeded, slow down"})
    return JSONResponse({"data": [{"id": 1}]})


async def paged(request: Request) -> Response:
    """Pages 1-3 have records; page 4 answers 400 "page out of range"."""
    page = int(request.query_params.get("page", 1))
    if page > 3:
        return JSONResponse({"detail": "page out of range"}, status_code=400)
    return JSONResponse({"data": [{"id": page}], "total": 10})


async def forbidden(request: Request) -> Response:
    return JSONResponse({"detail": "account suspended"}, status_code=403)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    routes = [
        Route("/customers/{customer:int}/orders", orders),
        Route("/busy", busy),
        Route("/paged", paged),
        Route("/forbidden", forbidden),
    ]
    with serve_app(Starlette(routes=routes)) as url:
        yield url


async def read(spec: HttpSource) -> list[Any]:
    return [page async for page in HttpSourceClient(spec, env={}).pages()]


def source(**fields: Any) -> HttpSource:
    return HttpSource.model_validate({"records": "$.data", "max_tries": 3, **fields})


async def test_a_skip_rule_ends_a_for_each_row_and_is_counted_and_logged(
    base: str, tmp_path: Path
) -> None:
    spec = parse_job(
        {
            "name": "orders",
            "source": {
                "url": f"{base}/customers/{{customer_id}}/orders",
                "records": "$.data",
                "paginate": {"type": "page", "param": "page", "start": 1},
                "for_each": {"values": [{"customer_id": c} for c in range(1, 7)]},
                "rules": [{"status": 404, "action": "skip"}],
            },
            "destination": {"table": "orders", "write": "append"},
        },
        "orders.yaml",
    )
    with DuckStore(tmp_path / "t.duckdb") as store:
        run_id = store.create_run("orders", NOW, Trigger.MANUAL)
        assert run_id is not None
        (begun,) = store.begin_attempts([Begin(run_id, job="orders", positioned=True)], "e")
        assert isinstance(begun, Begun)

        async def stage(table: Any, checkpoint: Any, pages: int) -> None:
            store.stage_batch(run_id, table, checkpoint=checkpoint, pages=pages)

        result = await extract_chains(spec, stage, begun=begun, now=NOW, env={})
        rows = store.commit_run(build_commit(spec, run_id, None, begun, result))
        run = store.get_run(run_id)
        landed = store.query("SELECT DISTINCT customer FROM main.orders ORDER BY 1")
    assert rows == 12 and [c for (c,) in landed] == [1, 2, 4, 6]
    assert run is not None and run["skipped_requests"] == 2 and run["state"] == "succeeded"
    assert sorted(result.skipped) == [
        f"{base}/customers/3/orders?page=1",
        f"{base}/customers/5/orders?page=1",
    ]
    finished = RunFinished(
        run_id=run_id, job="orders", attempt=1, rows=12, pages=10, seconds=0.1,
        skipped=list(result.skipped),
    )  # fmt: skip
    entry = log_entry(finished)
    assert entry is not None and "skipped 2 responses by rule:" in entry[3]
    assert f"{base}/customers/3/orders?page=1" in entry[3]


async def test_without_rules_a_404_fails_the_attempt_as_before(base: str) -> None:
    spec = source(url=f"{base}/customers/3/orders")
    with pytest.raises(SourceError, match="returned HTTP 404") as info:
        await read(spec)
    assert not isinstance(info.value, RuleFailed)


async def test_a_retry_rule_retries_a_200_that_says_rate_limit(base: str) -> None:
    HITS.clear()
    spec = source(
        url=f"{base}/busy",
        backoff="10ms",
        rules=[{"status": 200, "body_contains": "rate limit", "action": "retry"}],
    )
    pages = await read(spec)
    assert [r["id"] for p in pages for r in p.records] == [1] and HITS["busy"] == 3
    HITS.clear()
    once = source(
        url=f"{base}/busy",
        max_tries=2,
        backoff="10ms",
        rules=[{"status": 200, "body_contains": "rate limit", "action": "retry"}],
    )
    with pytest.raises(SourceError, match="returned HTTP 200 after 2 tries"):
        await read(once)


async def test_a_stop_rule_ends_pagination_and_the_read_succeeds(base: str) -> None:
    rule = {"status": 400, "body_contains": "out of range", "action": "stop"}
    spec = source(url=f"{base}/paged", paginate={"type": "page"}, rules=[rule])
    pages = await read(spec)
    assert [r["id"] for p in pages for r in p.records] == [1, 2, 3]
    assert pages[-1].checkpoint is None and not pages[-1].skipped
    # a full read a rule cut short is still checked against the total the server reports
    checked = source(
        url=f"{base}/paged", paginate={"type": "page"}, rules=[rule], expect_total="$.total"
    )
    with pytest.raises(SourceError, match="fetched 3 of 10 records"):
        await read(checked)


async def test_a_fail_rule_fails_at_once_and_the_run_is_not_retried(base: str) -> None:
    spec = source(url=f"{base}/forbidden", rules=[{"status": [401, 403], "action": "fail"}])
    with pytest.raises(RuleFailed, match="403.*a fail rule matched.*account suspended"):
        await read(spec)
    job = parse_job(
        {
            "name": "orders",
            "retries": {"max_attempts": 5},
            "source": {"url": f"{base}/forbidden"},
            "destination": {"table": "orders"},
        }
    )
    run = TrackedRun("r1", "orders", RunState.RUNNING, "manual", 1, 50, NOW)
    states = FakeStates(run)
    handler = ErrorHandler(cast(StateManager, states))
    assert await handler.failed(run, job, "403", 1, NOW, final=True) is False
    assert [m[1] for m in states.moves] == [RunState.FAILED]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"status": 200, "action": "skip"},
         "source.rules.0: a skip rule on a 2xx status needs body_contains or header"),
        ({"status": [204, 404], "action": "stop"},
         "source.rules.0: a stop rule on a 2xx status needs body_contains or header"),
        ({"status": 99, "action": "skip"}, "source.rules.0.status: status must be an HTTP status"),
        ({"status": 404, "action": "ignore"}, "source.rules.0.action: Input should be"),
    ],
)  # fmt: skip
def test_rules_that_cannot_work_are_refused_by_path(rule: dict[str, Any], message: str) -> None:
    job = {
        "name": "j",
        "source": {"url": "http://x", "rules": [rule]},
        "destination": {"table": "t"},
    }
    with pytest.raises(JobValidationError) as info:
        parse_job(job, "j.yaml")
    assert message in str(info.value)
