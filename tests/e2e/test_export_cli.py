"""`tg export TABLE -o FILE` as a user runs it, in subprocesses, on real DuckDB files: the rows
of a direct DuckDB read in Parquet or CSV, and the exit codes (2 usage, 3 no such file or table,
3 with what to do while another process holds the file, as `tg up` does)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from tests.kit.cli import read_rows, tg_on_file

pytestmark = [pytest.mark.slow]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data" / "turbo_giggle.duckdb"
    path.parent.mkdir()
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE orders AS SELECT range AS id, 'c' || range AS customer,"
            " range * 1.5 AS amount, TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_hours(range) AS at"
            " FROM range(3000)"
        )
        con.execute("CREATE SCHEMA tg; CREATE TABLE tg.runs (run_id VARCHAR)")  # metadata
    yield path


def export(db: Path, cwd: Path, *args: str) -> tuple[int, str]:
    return tg_on_file(db, cwd, "export", *args)


def test_export_writes_the_table_as_parquet(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "orders.parquet"
    rc, output = export(db, tmp_path, "orders", "-o", str(out))
    assert rc == 0, output
    assert output.strip() == f"wrote 3000 rows of orders to {out}"
    table = pq.read_table(out).sort_by("id")
    assert table.column_names == ["id", "customer", "amount", "at"]
    rows = list(zip(*(c.to_pylist() for c in table.columns), strict=True))
    assert rows == read_rows(db, "SELECT * FROM orders ORDER BY id")
    assert [p.name for p in out.parent.iterdir()] == ["orders.parquet"]  # no temporary left


def test_export_writes_csv_by_the_suffix(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "orders.csv"
    rc, output = export(db, tmp_path, "orders", "-o", str(out))
    assert rc == 0, output
    table = pa_csv.read_csv(out).sort_by("id")
    assert table.num_rows == 3000
    assert table.column("customer").to_pylist() == [
        c for (c,) in read_rows(db, "SELECT customer FROM orders ORDER BY id")
    ]


def test_export_exit_codes(db: Path, tmp_path: Path) -> None:
    rc, output = export(db, tmp_path, "orders", "-o", str(tmp_path / "o.json"))
    assert rc == 2 and "unknown file type '.json'; use .parquet, .csv" in output, output
    rc, output = export(db, tmp_path, "runs", "-o", str(tmp_path / "o.parquet"))
    assert rc == 3 and f"no table named 'runs' in {db} (tables: orders)" in output, output
    missing = tmp_path / "elsewhere" / "x.duckdb"
    rc, output = export(missing, tmp_path, "orders", "-o", str(tmp_path / "o.parquet"))
    assert rc == 3 and f"no DuckDB file at {missing}" in output, output
    assert not (tmp_path / "o.parquet").exists() and not (tmp_path / "o.json").exists()


def test_export_while_the_file_is_held_says_what_to_do(db: Path, tmp_path: Path) -> None:
    previous = db.parent / "exports" / "orders.parquet"
    previous.parent.mkdir()
    previous.write_bytes(b"not read")
    with duckdb.connect(str(db)):  # this process holds the file, as `tg up` would
        rc, output = export(db, tmp_path, "orders", "-o", str(tmp_path / "o.parquet"))
    assert rc == 3, output
    assert f"{db} is held by a running `tg up`" in output
    assert "destination.export: parquet" in output
    assert f"That file is there now: {previous}" in output
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize("name", ["x;drop", "1orders", "main.orders"])
def test_a_bad_table_name_exits_2(db: Path, tmp_path: Path, name: str) -> None:
    rc, output = export(db, tmp_path, name, "-o", str(tmp_path / "o.parquet"))
    assert rc == 2 and f"invalid table name {name!r}" in output, output
    assert not (tmp_path / "o.parquet").exists()
