"""Read-only views of the data tables in schema `main` (the API's /tables and the UI)."""

from __future__ import annotations

from typing import Any

import duckdb

from tg_actors.errors import TableNotFound
from tg_actors.store.schema import jsonable, one, quote


def list_tables(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Data tables of schema main: [{name, rows, columns: [{name, type}]}] by name."""
    rows = con.execute(
        "SELECT t.table_name, list({'name': c.column_name, 'type': c.data_type}"
        " ORDER BY c.column_index) FROM duckdb_tables() t JOIN duckdb_columns() c"
        " USING (database_name, schema_name, table_name)"
        " WHERE t.database_name = current_database() AND t.schema_name = 'main'"
        " GROUP BY t.table_name ORDER BY t.table_name"
    ).fetchall()
    return [{"name": name, "rows": _count(con, name), "columns": columns} for name, columns in rows]


def table_name(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """The name of the data table `name` (case-insensitive) in schema main; TableNotFound."""
    found = one(
        con,
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
        " AND schema_name = 'main' AND lower(table_name) = lower(?)",
        [name],
    )
    if found is None:
        raise TableNotFound(name)
    return str(found[0])


def preview_table(con: duckdb.DuckDBPyConnection, name: str, limit: int) -> dict[str, Any]:
    """First `limit` rows as JSON-ready values: {columns: [names], rows: [[values]]}."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    rel = con.sql(f"SELECT * FROM main.{quote(table_name(con, name))} LIMIT {int(limit)}")
    return {"columns": list(rel.columns), "rows": [jsonable(list(r)) for r in rel.fetchall()]}


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = one(con, f"SELECT count(*) FROM main.{quote(table)}")
    return int(row[0]) if row else 0
