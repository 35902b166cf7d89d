"""Checks inside the commit transaction and schema contracts, against real DuckDB files."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.kit.stepclock import T0, Clock
from tg_actors.attempts import Commit
from tg_actors.errors import ChecksFailed, JobValidationError, SchemaFrozen
from tg_actors.jobs import AnyCheck, JobSpec, SchemaContract, WriteMode, parse_job
from tg_actors.runstate import RunState
from tg_actors.store.duckdb import DuckStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckStore]:
    s = DuckStore(tmp_path / "data" / "turbo_giggle.duckdb", clock=Clock())
    yield s
    s.close()


_runs = iter(range(10_000))


def new_run(store: DuckStore) -> str:
    run_id = store.create_run("orders", T0 + timedelta(minutes=next(_runs)), "schedule")
    assert run_id is not None
    return run_id


def spec(checks: list[dict[str, Any]], **destination: Any) -> JobSpec:
    return parse_job(
        {
            "name": "orders",
            "source": {"type": "http", "url": "http://127.0.0.1:9/orders"},
            "destination": {"table": "orders", **destination},
            "checks": checks,
        }
    )


def commit(
    store: DuckStore,
    batch: pa.Table,
    checks: list[dict[str, Any]] | None = None,
    *,
    cursor: str | None = None,
    write: str = "append",
    contract: str = "evolve",
    **destination: Any,
) -> tuple[str, int | Exception]:
    """Commit `batch` as a new run of job orders; (run_id, rows or the exception)."""
    job = spec(checks or [], write=write, schema_contract=contract, **destination)
    run_id = new_run(store)
    record = Commit(
        run_id,
        table="orders",
        write=job.destination.write,
        primary_key=tuple(job.destination.primary_key),
        pages=1,
        cursor=None if cursor is None else ("orders", cursor),
        batch=batch,
        checks=tuple(job.checks),
        schema_contract=job.destination.schema_contract,
    )
    try:
        return run_id, store.commit_run(record)
    except Exception as exc:
        return run_id, exc


def table_rows(store: DuckStore) -> list[tuple[Any, ...]]:
    return store.con.execute("SELECT * FROM orders ORDER BY ALL").fetchall()


def results(store: DuckStore, run_id: str) -> dict[str, tuple[bool, str | None, str]]:
    return {c["name"]: (c["passed"], c["value"], c["on_fail"]) for c in store.run_checks(run_id)}


def orders(ids: list[int | None], status: list[str] | None = None) -> pa.Table:
    status = status or ["paid"] * len(ids)
    return pa.table({"id": pa.array(ids, pa.int64()), "status": status})


# -- a failing `fail` check lands nothing; a `warn` check lands and records ----------------


def test_a_failing_check_leaves_table_and_cursor_as_before_and_fails_for_good(
    store: DuckStore,
) -> None:
    first, rows = commit(store, orders([1, 2]), cursor="c1")
    assert rows == 2
    before = table_rows(store)
    check = {"name": "ids_present", "sql": "SELECT count(*) = 0 FROM records WHERE id IS NULL"}
    run_id, outcome = commit(store, orders([3, None]), [check], cursor="c2")
    assert isinstance(outcome, ChecksFailed)
    assert outcome.final  # the error handler does not retry it
    assert "ids_present (value: False)" in str(outcome) and "nothing committed" in str(outcome)
    assert table_rows(store) == before
    assert store.cursor("orders") == "c1"
    run = store.get_run(run_id)
    assert run is not None and run["state"] == RunState.QUEUED  # not succeeded
    assert results(store, run_id) == {"ids_present": (False, "False", "fail")}
    # it crosses Ray pickled: the results travel with it
    again = pickle.loads(pickle.dumps(outcome))
    assert isinstance(again, ChecksFailed) and again.failed_names() == ["ids_present"]


def test_a_warn_check_lands_the_rows_and_records_the_failure(store: DuckStore) -> None:
    check = {"type": "not_null", "columns": ["id"], "on_fail": "warn"}
    run_id, rows = commit(store, orders([1, None, 3]), [check], cursor="c1")
    assert rows == 3
    assert len(table_rows(store)) == 3 and store.cursor("orders") == "c1"
    assert results(store, run_id) == {"not_null_id": (False, "1 row with a NULL", "warn")}
    logs = [line["message"] for line in store.get_logs(run_id)]
    assert "check not_null_id did not pass (warn): 1 row with a NULL" in logs
    run = store.get_run(run_id)
    assert run is not None and run["state"] == RunState.SUCCEEDED


def test_a_passing_run_records_every_check(store: DuckStore) -> None:
    checks: list[dict[str, Any]] = [
        {"type": "row_count", "min": 1},
        {"sql": "SELECT true, 'fine' FROM records LIMIT 1"},
    ]
    run_id, rows = commit(store, orders([1]), checks)
    assert rows == 1
    assert results(store, run_id) == {
        "row_count_records": (True, "1 row", "fail"),
        "sql_2": (True, "fine", "fail"),
    }


# -- each shorthand against real data ------------------------------------------------------


def test_row_count_bounds(store: DuckStore) -> None:
    _, ok = commit(store, orders([1, 2, 3]), [{"type": "row_count", "min": 2, "max": 3}])
    assert ok == 3
    _, low = commit(store, orders([4]), [{"type": "row_count", "min": 2}])
    assert isinstance(low, ChecksFailed) and "1 row" in str(low)
    _, high = commit(store, orders([5, 6]), [{"type": "row_count", "max": 4, "over": "target"}])
    assert isinstance(high, ChecksFailed) and "5 rows" in str(high)  # 3 + 2 in the table
    assert len(table_rows(store)) == 3


def test_not_null_over_several_columns(store: DuckStore) -> None:
    check = {"type": "not_null", "columns": ["id", "status"]}
    _, ok = commit(store, orders([1, 2]), [check])
    assert ok == 2
    batch = pa.table({"id": [3, 4, None], "status": ["paid", None, "paid"]})
    run_id, bad = commit(store, batch, [check])
    assert isinstance(bad, ChecksFailed)
    assert results(store, run_id)["not_null_id_status"][:2] == (False, "2 rows with a NULL")


def test_unique_is_over_the_table_after_the_write(store: DuckStore) -> None:
    check = {"type": "unique", "columns": ["id"]}
    _, ok = commit(store, orders([1, 2]), [check])
    assert ok == 2
    # each run's own rows are unique; the table after the append would hold id 2 twice
    run_id, dup = commit(store, orders([2, 3]), [check])
    assert isinstance(dup, ChecksFailed)
    assert results(store, run_id)["unique_id"][:2] == (False, "1 duplicated keys (2 rows)")
    assert sorted(r[0] for r in table_rows(store)) == [1, 2]
    # merged on id the table stays unique
    _, merged = commit(store, orders([2, 3]), [check], write="merge", primary_key=["id"])
    assert merged == 2 and sorted(r[0] for r in table_rows(store)) == [1, 2, 3]


def test_accepted_values(store: DuckStore) -> None:
    check = {"type": "accepted_values", "column": "status", "values": ["paid", "refunded"]}
    _, ok = commit(store, orders([1, 2, None], ["paid", "refunded", "paid"]), [check])
    assert ok == 3
    run_id, bad = commit(store, orders([3, 4], ["paid", "lost"]), [check])
    assert isinstance(bad, ChecksFailed)
    assert results(store, run_id)["accepted_values_status"][:2] == (
        False,
        "1 row not accepted, e.g. 'lost'",
    )
    numbers = pa.table({"id": [5], "status": ["paid"], "n": [2]})
    _, typed = commit(
        store, numbers, [{"type": "accepted_values", "column": "n", "values": [1, 2]}]
    )
    assert typed == 1


def test_freshness_of_the_newest_value(store: DuckStore) -> None:
    now = store._now()  # the store's clock stamps the commit
    fresh = pa.table(
        {"id": [1, 2], "updated_at": [now - timedelta(days=3), now - timedelta(hours=1)]}
    )
    check = {"type": "freshness", "column": "updated_at", "max_age": "2h"}
    run_id, ok = commit(store, fresh, [check])
    assert ok == 2
    passed, value, _ = results(store, run_id)["freshness_updated_at"]
    assert passed and value is not None and "old)" in value
    stale = pa.table({"id": [3], "updated_at": [now - timedelta(days=5)]})
    over_records = {**check, "over": "records"}
    run_id, bad = commit(store, stale, [over_records])
    assert isinstance(bad, ChecksFailed)
    passed, value, _ = results(store, run_id)["freshness_updated_at"]
    assert not passed and value is not None and "d old" in value
    dates = pa.table({"id": [4], "day": pa.array([now.date()], pa.date32())})
    _, by_day = commit(store, dates, [{"type": "freshness", "column": "day", "max_age": "2d"}])
    assert by_day == 1


def test_a_check_that_does_not_bind_or_fails_while_running_is_a_failed_check(
    store: DuckStore,
) -> None:
    checks = [
        {"name": "typo", "sql": "SELECT count(nope) = 0 FROM records", "on_fail": "warn"},
        {
            "name": "bad_cast",
            "sql": "SELECT CAST('x' AS INTEGER) = 1 FROM records",
            "on_fail": "warn",
        },
        {"name": "not_bool", "sql": "SELECT 42 FROM records LIMIT 1", "on_fail": "warn"},
        {"name": "two_rows", "sql": "SELECT true FROM records", "on_fail": "warn"},
    ]
    run_id, rows = commit(store, orders([1, 2]), checks)
    assert rows == 2  # all warn: the rows land even though the commit was tried again
    found = results(store, run_id)
    assert all(not passed for passed, _, _ in found.values())
    assert "Binder Error" in str(found["typo"][1])
    assert "Conversion Error" in str(found["bad_cast"][1])
    assert "not a boolean" in str(found["not_bool"][1])
    assert "more than 1 rows" in str(found["two_rows"][1])
    assert len(table_rows(store)) == 2


def test_no_rows_still_checks_the_table(store: DuckStore) -> None:
    commit(store, orders([1]))
    run_id, rows = commit(store, orders([]), [{"type": "row_count", "min": 1, "over": "target"}])
    assert rows == 0
    assert results(store, run_id)["row_count_target"][:2] == (True, "1 row")


def test_check_validation_names_the_field() -> None:
    base = {"name": "j", "source": {"url": "http://127.0.0.1:9/x"}, "destination": {"table": "t"}}
    cases = [
        ([{"sql": "SELECT count(*) = 0 FROM tg.jobs"}], "checks.0.sql", "reads only"),
        ([{"sql": "DELETE FROM records"}], "checks.0.sql", "must be a SELECT"),
        ([{"type": "row_count"}], "checks.0", "needs min, max or both"),
        ([{"type": "row_count", "min": 5, "max": 1}], "checks.0", "greater than max"),
        ([{"type": "unique", "columns": []}], "checks.0.columns", "at least 1"),
        ([{"type": "nope"}], "checks.0", "nope"),
        ([{"type": "not_null", "columns": ["id"], "on_fail": "stop"}], "checks.0.on_fail", ""),
        ([{"type": "unique", "columns": ["id"]}] * 2, "checks", "a second check named"),
    ]
    for checks, loc, text in cases:
        with pytest.raises(JobValidationError) as info:
            parse_job({**base, "checks": checks})
        assert any(where == loc and text in m for where, m in info.value.errors), (
            checks,
            info.value.errors,
        )


# -- schema contracts: a source that adds, drops and retypes a column ----------------------

FIRST = pa.table({"id": [1, 2], "a": ["x", "y"], "b": pa.array([10, 20], pa.int64())})
# `a` dropped, `b` retyped BIGINT -> DOUBLE, `c` added; row 3 has a value in c and a b that
# BIGINT cannot hold, row 4 neither
SECOND = pa.table({"id": [3, 4], "b": [1.5, 2.0], "c": ["new", None]})


def columns(store: DuckStore) -> dict[str, str]:
    rel = store.con.sql("SELECT * FROM orders")
    return {name: str(ty) for name, ty in zip(rel.columns, rel.types, strict=True)}


def test_evolve_adds_and_widens_and_logs_the_diff(store: DuckStore) -> None:
    commit(store, FIRST)
    run_id, rows = commit(store, SECOND)
    assert rows == 2
    assert columns(store) == {"id": "BIGINT", "a": "VARCHAR", "b": "DOUBLE", "c": "VARCHAR"}
    assert table_rows(store)[-2:] == [(3, None, 1.5, "new"), (4, None, 2.0, None)]
    logs = [line["message"] for line in store.get_logs(run_id)]
    assert (
        "schema change in table orders: added c VARCHAR; changed b BIGINT -> DOUBLE;"
        " not in this run's rows (NULL there): a"
    ) in logs


def test_freeze_fails_naming_the_columns_and_commits_nothing(store: DuckStore) -> None:
    commit(store, FIRST, cursor="c1")
    before = table_rows(store)
    run_id, outcome = commit(store, SECOND, contract="freeze", cursor="c2")
    assert isinstance(outcome, SchemaFrozen) and outcome.final
    assert "new column(s) c VARCHAR" in str(outcome)
    assert "changed column(s) b BIGINT -> DOUBLE" in str(outcome)
    assert table_rows(store) == before and store.cursor("orders") == "c1"
    assert columns(store) == {"id": "BIGINT", "a": "VARCHAR", "b": "BIGINT"}
    assert isinstance(pickle.loads(pickle.dumps(outcome)), SchemaFrozen)
    # rows that fit go in: a dropped column is no change
    _, fits = commit(
        store, pa.table({"id": [5], "b": pa.array([7], pa.int64())}), contract="freeze"
    )
    assert fits == 1


def test_discard_columns_drops_new_columns_and_nulls_what_does_not_convert(
    store: DuckStore,
) -> None:
    commit(store, FIRST)
    run_id, rows = commit(store, SECOND, contract="discard_columns")
    assert rows == 2
    assert columns(store) == {"id": "BIGINT", "a": "VARCHAR", "b": "BIGINT"}
    assert table_rows(store)[-2:] == [(3, None, None), (4, None, 2)]
    logs = " ".join(line["message"] for line in store.get_logs(run_id))
    assert "schema_contract discard_columns: new column(s) c not stored" in logs
    run = store.get_run(run_id)
    assert run is not None and run["rows_discarded"] == 0


def test_discard_rows_drops_and_counts_the_rows_that_do_not_fit(store: DuckStore) -> None:
    commit(store, FIRST)
    run_id, rows = commit(store, SECOND, contract="discard_rows")
    assert rows == 1
    assert columns(store) == {"id": "BIGINT", "a": "VARCHAR", "b": "BIGINT"}
    assert table_rows(store)[-1] == (4, None, 2)
    run = store.get_run(run_id)
    assert run is not None and run["rows_discarded"] == 1 and run["rows_loaded"] == 1
    logs = " ".join(line["message"] for line in store.get_logs(run_id))
    assert "1 of 2 rows did not fit and were dropped" in logs
    # an incompatible retype: text into the BIGINT column, kept where it converts exactly
    text = pa.table({"id": [6, 7, 8], "b": ["5", "x", "007"]})
    run_id, rows = commit(store, text, contract="discard_rows")
    assert rows == 1 and table_rows(store)[-1] == (6, None, 5)
    run = store.get_run(run_id)
    assert run is not None and run["rows_discarded"] == 2


def test_a_table_first_run_creates_it_whatever_the_contract(store: DuckStore) -> None:
    _, rows = commit(store, SECOND, contract="freeze")
    assert rows == 2 and set(columns(store)) == {"id", "b", "c"}


@pytest.mark.parametrize("contract", list(SchemaContract))
def test_checks_see_the_rows_as_they_land(store: DuckStore, contract: SchemaContract) -> None:
    commit(store, FIRST)
    check = {"name": "n", "sql": "SELECT true, count(*) FROM records", "on_fail": "warn"}
    run_id, rows = commit(store, SECOND, [check], contract=contract.value)
    if contract is SchemaContract.FREEZE:
        assert isinstance(rows, SchemaFrozen)
        return
    assert results(store, run_id)["n"][1] == str(rows)


def test_commit_carries_checks_and_contract() -> None:
    job = spec([{"type": "row_count", "min": 1}], schema_contract="discard_rows")
    record = Commit("r1", table="t", write=WriteMode.APPEND, pages=1, checks=tuple(job.checks))
    assert record.schema_contract is SchemaContract.EVOLVE
    checks: tuple[AnyCheck, ...] = record.checks
    assert checks[0].label(0) == "row_count_records"
    with pytest.raises(ValueError, match="schema_contract"):
        Commit("r1", table="t", write="append", pages=1, schema_contract="loose")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="checks"):
        Commit("r1", table="t", write="append", pages=1, checks=("SELECT 1",))  # type: ignore[arg-type]
