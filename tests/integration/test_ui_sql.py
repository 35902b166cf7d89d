"""The UI's SQL tab over real HTTP, driven by gradio_client, against an API fake whose
queries run on a real in-memory DuckDB: a query shows its rows, a refusal its message, and
the CSV and Parquet downloads read back as the query's whole result."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.kit.ui import ui_over
from tg_actors.errors import QueryFailed, QueryRefused
from ui import sql as sql_ui

pytestmark = [pytest.mark.slow]

ROWS = 1_500  # more than the tab shows


class SqlFakeApi:
    """The part of ui.api.UiApi the SQL tab calls (list_tables, sql, sql_stream), on DuckDB
    in memory with one table `orders` of ROWS rows; the other tabs are not driven here."""

    def __init__(self) -> None:
        self.db = duckdb.connect()
        self.db.execute(
            f"CREATE TABLE orders AS SELECT range AS id, (range * 1.5)::DOUBLE AS amount FROM range({ROWS})"
        )
        self.asked: list[tuple[str, int | None]] = []

    async def list_tables(self) -> list[dict[str, Any]]:
        return [
            {"name": "orders", "rows": ROWS,
             "columns": [{"name": "id", "type": "BIGINT"}, {"name": "amount", "type": "DOUBLE"}]}
        ]  # fmt: skip

    def _read(self, sql: str) -> pa.Table:
        if not sql.lstrip().upper().startswith(("SELECT", "WITH", "FROM")):
            raise QueryRefused("only one read-only statement may run (SELECT, WITH, FROM ...)")
        try:
            return self.db.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise QueryFailed(str(exc).splitlines()[0]) from None

    async def sql(
        self, sql: str, params: list[Any] | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        self.asked.append((sql, limit))
        table = self._read(sql)
        shown = table.slice(0, limit) if limit is not None else table
        return {
            "columns": [{"name": f.name, "type": str(f.type)} for f in table.schema],
            "rows": [list(r.values()) for r in shown.to_pylist()],
            "row_count": shown.num_rows,
            "truncated": shown.num_rows < table.num_rows,
            "elapsed_ms": 1.25,
        }

    async def sql_stream(
        self,
        sql: str,
        params: list[Any] | None = None,
        limit: int | None = None,
        *,
        fmt: str = "arrow",
    ) -> AsyncIterator[bytes]:
        table = self._read(sql)
        sink = io.BytesIO()
        if fmt == "csv":
            pacsv.write_csv(table, sink)
        else:
            pq.write_table(table, sink)
        data = sink.getvalue()

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 4096):
                yield data[start : start + 4096]

        return chunks()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[SqlFakeApi, Any]]:
    fake = SqlFakeApi()
    with ui_over(fake) as client:
        yield fake, client


def test_query_shows_rows_count_and_time(served: tuple[SqlFakeApi, Any]) -> None:
    fake, client = served
    result, status = client.predict("SELECT id, amount FROM orders ORDER BY id", api_name="/sql")
    assert result["headers"] == ["id", "amount"]
    assert len(result["data"]) == sql_ui.SHOWN_ROWS
    assert result["data"][2] == [2, 3.0]
    assert f"{sql_ui.SHOWN_ROWS} row(s)" in status and "has more" in status and "1.2 ms" in status
    assert fake.asked[-1][1] == sql_ui.SHOWN_ROWS
    result, status = client.predict("SELECT count(*) AS n FROM orders", api_name="/sql")
    assert result["data"] == [[ROWS]] and "1 row(s)." in status and "has more" not in status


def test_refused_and_failed_queries_say_why(served: tuple[SqlFakeApi, Any]) -> None:
    _, client = served
    result, status = client.predict("DROP TABLE orders", api_name="/sql")
    assert "query refused: only one read-only statement" in status
    assert not result["data"] or result["data"] == [[""]] or len(result["data"][0]) <= 1
    _, status = client.predict("SELECT nope FROM orders", api_name="/sql")
    assert "query failed:" in status and "nope" in status
    _, status = client.predict("   ", api_name="/sql")
    assert "Write a query first." in status
    path, status = client.predict("DROP TABLE orders", api_name="/sql_csv")
    assert path is None and "query refused" in status


def test_downloads_read_back_the_whole_result(served: tuple[SqlFakeApi, Any]) -> None:
    _, client = served
    query = "SELECT id, amount FROM orders ORDER BY id"
    path, status = client.predict(query, api_name="/sql_csv")
    assert str(path).endswith(".csv") and "CSV" in status
    csv = pacsv.read_csv(path)
    assert csv.num_rows == ROWS and csv.column_names == ["id", "amount"]
    assert csv.column("amount")[ROWS - 1].as_py() == (ROWS - 1) * 1.5
    path, status = client.predict(query, api_name="/sql_parquet")
    assert str(path).endswith(".parquet") and "PARQUET" in status
    table = pq.read_table(path)
    assert table.num_rows == ROWS and table.column("id").to_pylist() == list(range(ROWS))


def test_tables_listed_beside_the_editor(served: tuple[SqlFakeApi, Any]) -> None:
    _, client = served
    shown = client.predict(api_name="/sql_tables")
    assert "**orders** (1500 rows)" in shown and "`amount` DOUBLE" in shown
