"""Schema contracts against a real HTTP source on 127.0.0.1 whose records add, drop and retype
a column between two runs: every contract through `run_job` (the engine's attempt and the
store's commit, no Ray), and freeze and discard_rows through the real actors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import ray

from tests.kit.fakeapi import FakeApi
from tests.kit.jobs import write_job
from tests.kit.ray import running_system, wait_for_run
from tests.kit.servers import serve_app
from tg_actors.jobs import SchemaContract
from tg_actors.localrun import run_job
from tg_actors.runstate import RunState
from tg_actors.store.duckdb import DuckStore

# run 1: id BIGINT, a VARCHAR, b BIGINT. Run 2 drops `a`, adds `c`, and retypes `b`: row 3's
# b (1.5) does not fit BIGINT, row 4's (2.0) does; row 3 also has a value in the new column.
FIRST: list[dict[str, Any]] = [{"id": 1, "a": "x", "b": 10}, {"id": 2, "a": "y", "b": 20}]
SECOND: list[dict[str, Any]] = [{"id": 3, "b": 1.5, "c": "new"}, {"id": 4, "b": 2.0, "c": None}]


@pytest.fixture
def fake() -> Iterator[tuple[FakeApi, str]]:
    api = FakeApi()
    with serve_app(api.app()) as url:
        yield api, url


def serve(api: FakeApi, records: list[dict[str, Any]]) -> None:
    api.rows = {r["id"]: r for r in records}


def job_yaml(name: str, url: str, contract: SchemaContract) -> str:
    return f"""
name: {name}
retries: {{max_attempts: 2, backoff: 10ms, max_backoff: 20ms}}
source:
  url: {url}/orders
  params: {{per_page: 100}}
  records: "$.data"
  paginate: {{type: page}}
  max_tries: 1
destination: {{table: {name}, write: append, schema_contract: {contract.value}}}
"""


def table(db: Path, name: str) -> tuple[dict[str, str], list[tuple[Any, ...]]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rel = con.sql(f"SELECT * FROM {name} ORDER BY id")
        return dict(zip(rel.columns, map(str, rel.types), strict=True)), rel.fetchall()
    finally:
        con.close()


def logs(db: Path, run_id: str) -> str:
    with DuckStore(db) as store:
        return " | ".join(str(line["message"]) for line in store.get_logs(run_id))


def discarded(db: Path, run_id: str) -> object:
    with DuckStore(db) as store:
        run = store.get_run(run_id)
    assert run is not None
    return run["rows_discarded"]


# contract -> (run 2's state, columns after it, the rows it left in the table, rows_discarded)
EXPECTED: dict[SchemaContract, tuple[RunState, dict[str, str], list[tuple[Any, ...]], int]] = {
    SchemaContract.EVOLVE: (
        RunState.SUCCEEDED,
        {"id": "BIGINT", "a": "VARCHAR", "b": "DOUBLE", "c": "VARCHAR"},
        [(1, "x", 10.0, None), (2, "y", 20.0, None), (3, None, 1.5, "new"), (4, None, 2.0, None)],
        0,
    ),
    SchemaContract.FREEZE: (
        RunState.FAILED,
        {"id": "BIGINT", "a": "VARCHAR", "b": "BIGINT"},
        [(1, "x", 10), (2, "y", 20)],
        0,
    ),
    SchemaContract.DISCARD_COLUMNS: (
        RunState.SUCCEEDED,
        {"id": "BIGINT", "a": "VARCHAR", "b": "BIGINT"},
        [(1, "x", 10), (2, "y", 20), (3, None, None), (4, None, 2)],
        0,
    ),
    SchemaContract.DISCARD_ROWS: (
        RunState.SUCCEEDED,
        {"id": "BIGINT", "a": "VARCHAR", "b": "BIGINT"},
        [(1, "x", 10), (2, "y", 20), (4, None, 2)],
        1,
    ),
}

# what run 2's logs (or, for freeze, its error) say about the change
SAYS = {
    SchemaContract.EVOLVE: "schema change in table {t}: added c VARCHAR; changed b BIGINT -> DOUBLE",
    SchemaContract.FREEZE: "new column(s) c VARCHAR",
    SchemaContract.DISCARD_COLUMNS: "schema_contract discard_columns: new column(s) c not stored",
    SchemaContract.DISCARD_ROWS: "1 of 2 rows did not fit and were dropped",
}


@pytest.mark.parametrize("contract", list(SchemaContract), ids=lambda c: c.value)
def test_each_contract_against_a_source_that_adds_drops_and_retypes(
    tmp_path: Path, fake: tuple[FakeApi, str], contract: SchemaContract
) -> None:
    api, url = fake
    name = f"c_{contract.value}"
    path = write_job(tmp_path / "configs", name, job_yaml(name, url, contract))
    db = tmp_path / "local.duckdb"
    serve(api, FIRST)
    assert run_job(path, db).rows_loaded == 2
    serve(api, SECOND)
    second = run_job(path, db)
    state, columns, rows, dropped = EXPECTED[contract]
    assert second.state is state, second.error
    assert table(db, name) == (columns, rows)
    said = SAYS[contract].format(t=name)
    if contract is SchemaContract.FREEZE:
        assert second.error is not None and said in second.error
        assert "changed column(s) b BIGINT -> DOUBLE" in second.error
        assert second.attempts == 1  # never retried: the next try brings the same columns
    else:
        assert said in logs(db, second.run_id)
        assert second.rows_loaded == len(rows) - 2
    assert discarded(db, second.run_id) == dropped


@pytest.mark.ray
@pytest.mark.usefixtures("ray_session")
def test_freeze_and_discard_rows_through_the_real_actors(
    tmp_path: Path, namespace: str, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    for contract in (SchemaContract.FREEZE, SchemaContract.DISCARD_ROWS):
        name = f"c_{contract.value}"
        write_job(tmp_path / "configs", name, job_yaml(name, url, contract))
    serve(api, FIRST)
    with running_system(tmp_path, namespace, engines=1) as rt:

        def run(job: str) -> dict[str, Any]:
            return wait_for_run(rt, ray.get(rt.scheduler.trigger.remote(job)))

        for job in ("c_freeze", "c_discard_rows"):
            assert run(job)["rows_loaded"] == 2
        serve(api, SECOND)
        frozen, dropped = run("c_freeze"), run("c_discard_rows")
        frozen_rows = ray.get(rt.db.query.remote("SELECT count(*) FROM c_freeze"))
        kept = ray.get(rt.db.query.remote("SELECT id FROM c_discard_rows ORDER BY id"))
        dropped_run = ray.get(rt.db.get_run.remote(dropped["run_id"]))
    assert frozen["state"] == RunState.FAILED and frozen["attempt"] == 1
    assert "new column(s) c VARCHAR" in str(frozen["error"])
    assert frozen_rows == [(2,)]
    assert dropped["state"] == RunState.SUCCEEDED and dropped["rows_loaded"] == 1
    assert kept == [(1,), (2,), (4,)]
    assert dropped_run["rows_discarded"] == 1
