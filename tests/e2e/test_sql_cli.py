"""`tg sql` as a user runs it with no `tg up`, in subprocesses, on a real DuckDB file opened
read-only: the rows of a direct DuckDB read as a table, CSV, JSON and Parquet; refused
statements exit 1 with nothing changed; exit 2 for usage, 3 for no file and nothing running."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from tests.kit.cli import free_port, read_rows, run_tg, tg, tg_env, tg_on_file
from tg_actors.store.schema import create_schema

pytestmark = [pytest.mark.slow]
TOKEN = "e2e-sql-token-0123456789"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data" / "turbo_giggle.duckdb"
    path.parent.mkdir()
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE orders AS SELECT range AS id, 'c' || range AS customer,"
            " range * 1.5::DOUBLE AS amount FROM range(300)"
        )
        create_schema(con)  # tg.runs, tg.jobs, … as the Database makes them
        con.execute(
            "INSERT INTO tg.jobs (name, spec, origin, created_at, updated_at) VALUES"
            """ ('orders', '{"auth": {"token": "${SECRET_T}"}}', 'file', now(), now())"""
        )
    yield path


def sql(db: Path, cwd: Path, *args: str) -> tuple[int, str]:
    return tg_on_file(db, cwd, "sql", *args)


def test_formats_equal_a_direct_read(db: Path, tmp_path: Path) -> None:
    query = "SELECT id, customer, amount FROM orders WHERE id >= ? ORDER BY id"
    want = read_rows(db, query.replace("?", "250"))
    code, out = sql(db, tmp_path, query, "-p", "250", "--format", "json")
    assert code == 0, out
    assert [tuple(r.values()) for r in json.loads(out)] == want
    code, out = sql(db, tmp_path, query, "-p", "250", "--format", "csv", "-o", "o.csv")
    assert code == 0, out
    table = pa_csv.read_csv(tmp_path / "o.csv")
    assert [tuple(r.values()) for r in table.to_pylist()] == want
    code, out = sql(db, tmp_path, query, "-p", "250", "-f", "parquet", "-o", "o.parquet")
    assert code == 0 and "wrote 50 rows" in out, out
    assert [tuple(r.values()) for r in pq.read_table(tmp_path / "o.parquet").to_pylist()] == want
    code, out = sql(db, tmp_path, "SELECT count(*) AS n, max(customer) AS top FROM orders")
    assert code == 0, out
    assert "n" in out and "300" in out and "c99" in out and "1 row(s)" in out


def test_the_readable_table_shows_the_first_1000_rows(db: Path, tmp_path: Path) -> None:
    code, out = sql(db, tmp_path, "SELECT range AS i FROM range(5000)")
    assert code == 0 and "│ 999 " in out and "│ 1000 " not in out, out
    assert "the first 1000 rows shown; the result has more" in out


def test_the_metadata_tables_with_tg_jobs_masked(db: Path, tmp_path: Path) -> None:
    code, out = sql(db, tmp_path, "SELECT count(*) AS n FROM tg.runs", "-f", "json")
    assert code == 0 and json.loads(out) == [{"n": 0}], out
    code, out = sql(db, tmp_path, "SELECT spec FROM tg.jobs", "-f", "json")
    assert code == 0 and json.loads(out) == [{"spec": '{"auth": {"token": "***"}}'}], out


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        ("DELETE FROM orders", "DELETE is not read-only"),
        ("INSERT INTO orders VALUES (1, 'x', 1)", "not read-only"),
        ("COPY orders TO 'out.csv'", "COPY reads or writes files"),
        ("ATTACH 'other.duckdb' AS o", "ATTACH opens another database"),
        ("SET threads = 1", "change settings"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
        ("SELECT 1; DROP TABLE orders", "2 statements"),
    ],
)
def test_a_refused_statement_exits_1_with_nothing_changed(
    db: Path, tmp_path: Path, statement: str, why: str
) -> None:
    code, out = sql(db, tmp_path, statement)
    assert code == 1 and "refused" in out and why in out, out
    assert read_rows(db, "SELECT count(*) FROM orders") == [(300,)]
    assert not (tmp_path / "out.csv").exists()


def test_exit_codes(db: Path, tmp_path: Path) -> None:
    code, out = sql(db, tmp_path, "SELECT nope FROM orders")
    assert code == 1 and "nope" in out, out
    code, out = sql(db, tmp_path, "SELECT 1", "-f", "parquet")
    assert code == 2 and "-o FILE" in out, out
    code, out = sql(db, tmp_path, "SELECT 1", "-f", "xml")
    assert code == 2, out
    code, out = sql(tmp_path / "none.duckdb", tmp_path, "SELECT 1")
    assert code == 3 and "no DuckDB file" in out, out


def test_a_held_file_and_no_api_exits_3_saying_so(db: Path, tmp_path: Path) -> None:
    with duckdb.connect(str(db)):  # this process holds the file, as `tg up` would
        code, out = sql(db, tmp_path, "SELECT 1")
    assert code == 3 and f"{db} is held by another process" in out and "--url" in out, out


def test_two_params_bind_the_two_marks_in_order(db: Path, tmp_path: Path) -> None:
    query = "SELECT id FROM orders WHERE id >= ? AND id < ? ORDER BY id"
    code, out = sql(db, tmp_path, query, "-p", "10", "-p", "13", "-f", "json")
    assert code == 0 and json.loads(out) == [{"id": 10}, {"id": 11}, {"id": 12}], out
    code, out = sql(db, tmp_path, query, "-p", "13", "-p", "10", "-f", "json")
    assert code == 0 and json.loads(out) == [], out  # the other order: nothing between


def test_csv_to_stdout_and_json_to_a_file(db: Path, tmp_path: Path) -> None:
    query = "SELECT id, customer FROM orders WHERE id < 3 ORDER BY id"
    code, out = sql(db, tmp_path, query, "--format", "csv")
    assert code == 0, out
    assert out.splitlines() == ['"id","customer"', '0,"c0"', '1,"c1"', '2,"c2"']
    code, out = sql(db, tmp_path, query, "--format", "json", "-o", "o.json")
    assert code == 0 and out == "", out
    assert json.loads((tmp_path / "o.json").read_text(encoding="utf-8")) == [
        {"id": 0, "customer": "c0"},
        {"id": 1, "customer": "c1"},
        {"id": 2, "customer": "c2"},
    ]


def test_json_has_decimals_as_numbers_and_timestamps_in_iso(db: Path, tmp_path: Path) -> None:
    query = (
        "SELECT 12.50::DECIMAL(10, 2) AS price, 7::DECIMAL(38, 2) AS whole,"
        " TIMESTAMP '2026-01-02 03:04:05' AS at, TIMESTAMPTZ '2026-01-02 03:04:05+00' AS at_tz"
    )
    code, out = sql(db, tmp_path, query, "-f", "json")
    assert code == 0, out
    [row] = json.loads(out)
    assert row == {
        "price": 12.5,
        "whole": 7,
        "at": "2026-01-02T03:04:05",
        "at_tz": "2026-01-02T03:04:05+00:00",
    }
    assert isinstance(row["price"], float) and isinstance(row["whole"], int)


def _sql_with(env: dict[str, str], db: Path, cwd: Path, *args: str) -> tuple[int, str]:
    full = {**tg_env(free_port()), **env}
    return run_tg(tg("sql", *args, "--db", str(db)), full, cwd, 60)


def test_no_token_for_the_api_exits_2(db: Path, tmp_path: Path) -> None:
    nothing = f"http://127.0.0.1:{free_port()}"
    code, out = _sql_with({}, db, tmp_path, "SELECT 1", "--url", nothing)
    assert code == 2 and "no API token" in out and "TG_API_TOKEN" in out, out


@pytest.mark.parametrize("timeout", ["30s", "2m", "45"])
def test_tg_sql_timeout_may_be_a_duration(db: Path, tmp_path: Path, timeout: str) -> None:
    env = {"TG_SQL_TIMEOUT": timeout, "TG_API_TOKEN": TOKEN}
    nothing = f"http://127.0.0.1:{free_port()}"
    code, out = _sql_with(env, db, tmp_path, "SELECT 1", "--url", nothing)
    assert code == 3 and "is `tg up` running?" in out and "Traceback" not in out, out


def test_a_bad_tg_sql_timeout_exits_2_naming_it(db: Path, tmp_path: Path) -> None:
    env = {"TG_SQL_TIMEOUT": "soon", "TG_API_TOKEN": TOKEN}
    nothing = f"http://127.0.0.1:{free_port()}"
    code, out = _sql_with(env, db, tmp_path, "SELECT 1", "--url", nothing)
    assert code == 2 and "setting sql_timeout" in out and "Traceback" not in out, out
