"""Dependent endpoints through every actor on a real local Ray: a customers job, then (by
`triggers.after`) an orders job with `for_each.sql` over the customers table, against the
demo API on 127.0.0.1; the Database runs the rows' SQL on its read path. A for_each SQL
over a table not there yet fails the run naming the job that writes it; a backfill and a
refresh go through the Scheduler with their triggers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
import ray

from demo.app import demo_customers, demo_orders
from tests.kit.jobs import write_job
from tests.kit.ray import running_system, wait_for_run, wait_runs
from tests.kit.servers import DEMO_ROWS
from tg_actors.errors import BackfillRefused

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

CUSTOMERS_JOB = """
name: customers
source:
  url: {url}/customers
  params: {{per_page: 100}}
  records: "$.data"
  paginate: {{type: page, param: page, start: 1}}
destination: {{table: customers, write: merge, primary_key: [id]}}
"""

ORDERS_JOB = """
name: customer_orders
triggers: {{after: [customers]}}
source:
  url: "{url}/customers/{{customer_id}}/orders"
  params: {{per_page: 20, created_gte: "{{window_start}}", created_lt: "{{window_end}}"}}
  records: "$.data"
  paginate: {{type: page, param: page, start: 1}}
  for_each:
    sql: "SELECT id AS customer_id FROM customers WHERE id < 20 ORDER BY id"
    include: [customer_id]
    concurrency: 8
  window: {{start: "2024-01-01T00:00:00Z", step: 14d, end: "2024-03-01T00:00:00Z"}}
destination: {{table: customer_orders, write: merge, primary_key: [id]}}
"""


def created(order: dict[str, object]) -> datetime:
    return datetime.fromisoformat(str(order["created_at"]))


def test_a_child_job_reads_one_chain_per_parent_row(
    tmp_path: Path, namespace: str, demo_server: str
) -> None:
    configs = tmp_path / "configs"
    write_job(configs, "customers", CUSTOMERS_JOB.format(url=demo_server))
    write_job(configs, "customer_orders", ORDERS_JOB.format(url=demo_server))
    end = datetime(2024, 3, 1, tzinfo=UTC)
    want = sorted(
        (o["id"], o["id"] % 250)
        for o in demo_orders(DEMO_ROWS)
        if o["id"] % 250 < 20 and created(o) < end
    )
    with running_system(tmp_path, namespace) as rt:
        # before the parent has run: the child's SQL names a table not there yet
        early = wait_for_run(rt, ray.get(rt.scheduler.trigger.remote("customer_orders")))
        assert early["state"] == "failed"
        assert "reads table 'customers', which does not exist yet" in early["error"]
        assert "run job 'customers' first?" in early["error"]

        parent = wait_for_run(rt, ray.get(rt.scheduler.trigger.remote("customers")))
        assert parent["state"] == "succeeded" and parent["rows_loaded"] == len(demo_customers())
        runs = wait_runs(
            rt,
            "customer_orders",
            "the run after customers",
            lambda rs: any(r["trigger"] == "after:customers" and r["finished_at"] for r in rs),
        )
        child = next(r for r in runs if r["trigger"] == "after:customers")
        assert child["state"] == "succeeded", child["error"]
        assert child["rows_loaded"] == len(want)

        # a backfill re-reads January and moves no position; a refresh replaces the table
        with pytest.raises(BackfillRefused, match="no source.window"):
            ray.get(
                rt.scheduler.backfill.remote("customers", datetime(2024, 1, 1, tzinfo=UTC), end)
            )
        state_before = ray.get(rt.db.query.remote("SELECT positions FROM tg.state"))
        run_id = ray.get(
            rt.scheduler.backfill.remote(
                "customer_orders",
                datetime(2024, 1, 1, tzinfo=UTC),
                datetime(2024, 2, 1, tzinfo=UTC),
            )
        )
        backfill = wait_for_run(rt, run_id)
        assert backfill["state"] == "succeeded" and backfill["trigger"] == "backfill"
        assert ray.get(rt.db.query.remote("SELECT positions FROM tg.state")) == state_before
        refresh = wait_for_run(rt, ray.get(rt.scheduler.refresh.remote("customer_orders")))
        assert refresh["state"] == "succeeded" and refresh["trigger"] == "refresh"
        assert refresh["rows_loaded"] == len(want)
        db_path = ray.get(rt.db.path.remote())
    with duckdb.connect(db_path, read_only=True) as con:
        rows = con.execute("SELECT id, customer_id FROM customer_orders ORDER BY id").fetchall()
    assert rows == want
