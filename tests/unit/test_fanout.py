"""Dependent endpoints and windows end to end without Ray: engine/fanout.py reads real HTTP
servers on 127.0.0.1 and stages into a real DuckDB file (DuckStore), whose begin and commit
are the Database actor's own. Exact rows for parent/child chains with pagination inside each
child, per-row cursors that never bleed, a crash in row 40 of 100 resumed without re-reading
rows 1-39, windows with empty days, a backfill that moves no cursor, a refresh that replaces
the table in one transaction."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from demo.app import build_demo_app, demo_orders
from tests.kit.servers import CountingApp, serve_app
from tg_actors.attempts import Begin, Begun
from tg_actors.engine.fanout import build_commit, extract_chains
from tg_actors.jobs import JobSpec, parse_job
from tg_actors.runstate import Trigger, backfill_trigger
from tg_actors.store.duckdb import DuckStore

ROWS = 2500  # demo orders: customer i % 250 gets 10 orders, one every ~2.95 days
NOW = datetime(2024, 6, 1, tzinfo=UTC)
_ticks = itertools.count()


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[CountingApp, str]]:
    counting = CountingApp(Starlette(routes=[Mount("/demo", app=build_demo_app(ROWS))]))
    with serve_app(counting) as base_url:
        yield counting, f"{base_url}/demo"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckStore]:
    with DuckStore(tmp_path / "t.duckdb") as s:
        yield s


def orders_job(base: str, **source: Any) -> JobSpec:
    return parse_job(
        {
            "name": "customer_orders",
            "source": {
                "url": f"{base}/customers/{{customer_id}}/orders",
                "params": {"per_page": 5},
                "records": "$.data",
                "paginate": {"type": "page", "param": "page", "start": 1},
                "max_tries": 1,
                **source,
            },
            "destination": {"table": "orders", "write": "merge", "primary_key": ["id"]},
        },
        "customer_orders.yaml",
    )


def customers(*ids: int, concurrency: int = 4) -> dict[str, Any]:
    values = [{"customer_id": i} for i in ids]
    return {"values": values, "include": ["customer_id"], "concurrency": concurrency}


async def sync(
    store: DuckStore,
    spec: JobSpec,
    *,
    trigger: str = Trigger.MANUAL,
    run_id: str | None = None,
    before_commit: Any = None,
) -> tuple[str, int, Begun]:
    """One attempt of `spec` as an engine makes it: begin (resume, positions), the chains,
    the commit. Returns (run_id, rows committed, the Begun)."""
    if run_id is None:
        when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=next(_ticks))
        run_id = store.create_run(spec.name, when, trigger)
        assert run_id is not None
    begin = Begin(run_id, job=spec.name, incremental=True, positioned=True)
    (begun,) = store.begin_attempts([begin], "engine-1")
    assert isinstance(begun, Begun), begun

    async def stage(table: Any, checkpoint: Any, pages: int) -> None:
        store.stage_batch(run_id, table, checkpoint=checkpoint, pages=pages)

    result = await extract_chains(spec, stage, begun=begun, now=NOW, env={})
    if before_commit is not None:
        before_commit()
    rows = store.commit_run(build_commit(spec, run_id, None, begun, result))
    return run_id, rows, begun


def of_customers(*ids: int) -> list[dict[str, Any]]:
    return [o for o in demo_orders(ROWS) if o["id"] % 250 in ids]


def landed(store: DuckStore) -> list[tuple[Any, ...]]:
    return store.query("SELECT id, customer_id FROM main.orders ORDER BY id")


async def test_each_row_chain_is_paginated_and_lands_exactly(
    demo: tuple[CountingApp, str], store: DuckStore
) -> None:
    counting, base = demo
    counting.seen.clear()
    spec = orders_job(base, for_each=customers(3, 7, 11, concurrency=2))
    _, rows, _ = await sync(store, spec)
    want = sorted((o["id"], o["id"] % 250) for o in of_customers(3, 7, 11))
    assert rows == 30 and landed(store) == want
    paths = sorted(p for p in counting.seen if "/customers/" in p)
    # 10 orders each, 5 a page: pages 1, 2 and the empty page 3 of every customer
    assert paths == sorted(
        f"/demo/customers/{c}/orders?per_page=5&page={p}" for c in (3, 7, 11) for p in (1, 2, 3)
    )


async def test_each_row_keeps_its_own_cursor(tmp_path: Path, store: DuckStore) -> None:
    """A new order under customer 7 is picked up without re-reading customer 3: each row asks
    from its own cursor (dlt #2429: a cursor shared by all parents skips or re-reads rows)."""
    orders = {
        3: [{"id": 1, "updated_at": "2024-01-05T00:00:00Z"}],
        7: [{"id": 2, "updated_at": "2024-03-09T00:00:00Z"}],
    }
    asked: list[tuple[int, str]] = []

    async def by_customer(request: Request) -> Response:
        customer = int(request.path_params["customer"])
        since = request.query_params.get("updated_since", "")
        asked.append((customer, since))
        return JSONResponse({"data": [o for o in orders[customer] if o["updated_at"] >= since]})

    app = Starlette(routes=[Route("/customers/{customer:int}/orders", by_customer)])
    with serve_app(app) as base:
        incremental = {"cursor_field": "updated_at", "param": "updated_since", "initial": "2024"}
        spec = orders_job(
            base, for_each=customers(3, 7), incremental=incremental, paginate={"type": "none"}
        )
        await sync(store, spec)
        assert sorted(asked) == [(3, "2024"), (7, "2024")]
        orders[7].append({"id": 3, "updated_at": "2024-04-01T00:00:00Z"})
        asked.clear()
        _, rows, _ = await sync(store, spec)
    assert sorted(asked) == [(3, "2024-01-05T00:00:00Z"), (7, "2024-03-09T00:00:00Z")]
    assert rows == 3  # 1 and 2 again (from their own cursors, inclusive) and the new 3
    assert landed(store) == [(1, 3), (2, 7), (3, 7)]
    positions = store.query("SELECT positions FROM tg.state WHERE job = 'customer_orders'")
    assert '"{\\"customer_id\\":7}": {"cursor": "2024-04-01T00:00:00Z"}' in positions[0][0]


class FailOnce:
    """The demo, except that one request fails once with a 500."""

    def __init__(self, app: Any, path: str, *query: str) -> None:
        self.app, self.path, self.query, self.failed = app, path, query, False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        hit = scope["type"] == "http" and scope["path"] == self.path
        asked = scope.get("query_string", b"").decode()
        if hit and all(part in asked for part in self.query) and not self.failed:
            self.failed = True
            await JSONResponse({"detail": "boom"}, status_code=500)(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def test_a_crash_in_row_40_of_100_resumes_without_rereading_rows_1_to_39(
    store: DuckStore,
) -> None:
    counting = CountingApp(Starlette(routes=[Mount("/demo", app=build_demo_app(ROWS))]))
    with serve_app(FailOnce(counting, "/demo/customers/39/orders", "&page=2")) as base:
        # one row at a time and a checkpoint per page: what is staged is exactly rows 1-39
        spec = orders_job(f"{base}/demo", for_each=customers(*range(100), concurrency=1))
        spec = spec.model_copy(
            update={"source": spec.source.model_copy(update={"checkpoint_rows": 1})}
        )
        with pytest.raises(Exception, match="500"):
            await sync(store, spec, run_id=store.create_run(spec.name, NOW, Trigger.MANUAL))
        (run_id,) = [r[0] for r in store.query("SELECT run_id FROM tg.runs")]
        counting.seen.clear()
        _, rows, begun = await sync(store, spec, run_id=run_id)
    assert begun.resume is not None
    again = {int(p.split("/")[3]) for p in counting.seen}
    assert again == set(range(39, 100))  # row 40 (customer 39) on: its page 2 first
    assert "/demo/customers/39/orders?per_page=5&page=1" not in counting.seen
    assert rows == 1000 and landed(store) == sorted(
        (o["id"], o["id"] % 250) for o in of_customers(*range(100))
    )


async def test_windows_walk_the_range_and_an_empty_day_is_no_error(
    demo: tuple[CountingApp, str], store: DuckStore
) -> None:
    _, base = demo
    window = {"start": "2024-01-01T00:00:00Z", "step": "1d", "end": "2024-01-15T00:00:00Z"}
    params = {"per_page": 5, "created_gte": "{window_start}", "created_lt": "{window_end}"}
    spec = orders_job(base, for_each=customers(3), window=window, params=params)
    _, rows, _ = await sync(store, spec)
    end = datetime(2024, 1, 15, tzinfo=UTC)
    want = [o for o in of_customers(3) if datetime.fromisoformat(o["created_at"]) < end]
    assert 0 < rows == len(want) < 14  # fewer orders than days: some days are empty
    assert landed(store) == [(o["id"], 3) for o in want]
    state = store.query("SELECT positions FROM tg.state")[0][0]
    assert '"window": "2024-01-15T00:00:00Z"' in state
    _, rows, _ = await sync(store, spec)  # nothing left to read: the next run starts at end
    assert rows == 0


async def test_a_backfill_reads_its_range_and_moves_no_position(
    demo: tuple[CountingApp, str], store: DuckStore
) -> None:
    _, base = demo
    window = {"start": "2024-01-10T00:00:00Z", "step": "5d", "end": "2024-01-20T00:00:00Z"}
    params = {"per_page": 5, "created_gte": "{window_start}", "created_lt": "{window_end}"}
    spec = orders_job(base, for_each=customers(3, 7), window=window, params=params)
    await sync(store, spec)
    before = store.query("SELECT positions FROM tg.state")
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 10, tzinfo=UTC)
    _, rows, begun = await sync(store, spec, trigger=backfill_trigger(start, end))
    assert begun.trigger == Trigger.BACKFILL and begun.range == (start, end)
    assert store.query("SELECT positions FROM tg.state") == before
    first = [
        o
        for o in of_customers(3, 7)
        if start <= datetime.fromisoformat(o["created_at"]) < datetime(2024, 1, 20, tzinfo=UTC)
    ]
    assert rows > 0 and landed(store) == sorted((o["id"], o["id"] % 250) for o in first)


async def test_a_refresh_replaces_the_table_in_its_commit_and_resets_positions(
    demo: tuple[CountingApp, str], store: DuckStore
) -> None:
    _, base = demo
    spec = orders_job(base, for_each=customers(3, 7))
    await sync(store, spec)
    store.con.execute("INSERT INTO main.orders (id, customer_id) VALUES (999999, 1)")  # stale
    store.con.execute(
        'UPDATE tg.state SET positions = \'{"gone": {"cursor": "9"}}\' WHERE job = ?',
        [spec.name],
    )
    seen: list[list[tuple[Any, ...]]] = []
    _, rows, _ = await sync(
        store, spec, trigger=Trigger.REFRESH, before_commit=lambda: seen.append(landed(store))
    )
    assert (999999, 1) in seen[0]  # everything staged, not committed: readers see the old rows
    assert rows == 20 and landed(store) == sorted(
        (o["id"], o["id"] % 250) for o in of_customers(3, 7)
    )
    positions = store.query("SELECT positions FROM tg.state")[0][0]
    assert "gone" not in positions and "customer_id" in positions


async def test_zero_rows_is_a_successful_run_of_zero_records(
    demo: tuple[CountingApp, str], store: DuckStore
) -> None:
    _, base = demo
    spec = orders_job(base, for_each={"values": []})
    run_id, rows, _ = await sync(store, spec)
    assert rows == 0 and store.get_run(run_id)["state"] == "succeeded"  # type: ignore[index]


async def test_every_request_of_every_chain_takes_the_one_rate_budget(
    demo: tuple[CountingApp, str], store: DuckStore
) -> None:
    counting, base = demo
    counting.seen.clear()
    taken = 0

    async def acquire() -> None:
        nonlocal taken
        taken += 1

    spec = orders_job(base, for_each=customers(*range(12), concurrency=6))
    run_id = store.create_run(spec.name, NOW, Trigger.MANUAL)
    assert run_id is not None
    (begun,) = store.begin_attempts([Begin(run_id, job=spec.name, positioned=True)], "e")
    assert isinstance(begun, Begun)

    async def stage(table: Any, checkpoint: Any, pages: int) -> None:
        store.stage_batch(run_id, table, checkpoint=checkpoint, pages=pages)

    await extract_chains(spec, stage, begun=begun, now=NOW, env={}, acquire=acquire)
    assert taken == len(counting.seen) == 12 * 3


async def test_a_window_is_a_checkpoint_and_a_retry_keeps_the_first_attempts_end(
    store: DuckStore,
) -> None:
    counting = CountingApp(Starlette(routes=[Mount("/demo", app=build_demo_app(ROWS))]))
    day5 = "created_gte=2024-01-05"
    with serve_app(FailOnce(counting, "/demo/orders", f"{day5}T", "&page=2")) as base:
        window = {"start": "2024-01-01T00:00:00Z", "step": "1d"}  # end: now
        params = {"per_page": 20, "created_gte": "{window_start}", "created_lt": "{window_end}"}
        spec = parse_job(
            {
                "name": "daily",
                "source": {
                    "url": f"{base}/demo/orders",
                    "params": params,
                    "records": "$.data",
                    "paginate": {"type": "page", "param": "page", "start": 1},
                    "window": window,
                    "max_tries": 1,
                    "checkpoint_rows": 1,
                },
                "destination": {"table": "orders", "write": "append"},
            },
            "daily.yaml",
        )
        run_id = store.create_run(spec.name, NOW, Trigger.MANUAL)
        assert run_id is not None
        first_now = datetime(2024, 1, 10, 12, tzinfo=UTC)

        async def attempt(now: datetime) -> int:
            (begun,) = store.begin_attempts([Begin(run_id, job="daily", positioned=True)], "e")
            assert isinstance(begun, Begun)

            async def stage(table: Any, checkpoint: Any, pages: int) -> None:
                store.stage_batch(run_id, table, checkpoint=checkpoint, pages=pages)

            result = await extract_chains(spec, stage, begun=begun, now=now, env={})
            return store.commit_run(build_commit(spec, run_id, None, begun, result))

        with pytest.raises(Exception, match="500"):
            await attempt(first_now)
        counting.seen.clear()
        rows = await attempt(datetime(2024, 3, 1, tzinfo=UTC))  # later: the end stays
    asked = sorted({q.split("created_gte=")[1][:10] for q in counting.seen})
    assert asked[0] == "2024-01-05"  # days 1-4 are not read again; day 5 from its page 2
    assert not [q for q in counting.seen if day5 in q and q.endswith("&page=1")]
    want = [
        o["id"] for o in demo_orders(ROWS) if datetime.fromisoformat(o["created_at"]) < first_now
    ]
    assert rows == len(want)
    assert [r[0] for r in store.query("SELECT id FROM main.orders ORDER BY id")] == want
    state = store.query("SELECT positions FROM tg.state WHERE job = 'daily'")[0][0]
    assert '"window": "2024-01-10T12:00:00Z"' in state  # the last window, clamped at the end
