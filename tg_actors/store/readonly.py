"""The second wall of the read path: a database that reaches no file, URL or extension, read
through read-only transactions that see `tg.jobs` with its secrets masked.

`lock_down(con)` runs once on the writer's connection when the Database actor opens the file.
Database-wide and for the writer too: `enable_external_access = false` (no file or URL reader,
no COPY, no ATTACH of a file, no Python replacement scans; DuckDB refuses to turn it back on
while the database runs), `autoinstall_known_extensions` and `autoload_known_extensions` off.
The store needs none of these: it reads and writes the database file (and spills to its temp
directory, still allowed), registers Arrow tables by name, and export.py writes files with
pyarrow, not DuckDB. `lock_configuration` is left off: it is database-wide too and would
refuse the per-connection `SET TimeZone` that every cursor (the exporter's, these) makes, so a
SET that slipped past the parser could change memory or threads, never reach a file.

It also attaches an in-memory catalog, MASK_CATALOG, whose schema `tg` holds one view per
table a query may read there (reads.TG_TABLES). Each read cursor puts that schema on its
search path, so `tg.jobs` in a query is the view: the same rows as the table, with `spec`
masked as the public API masks jobs. The parser refuses catalog-qualified names, the only way
past the view to the table.

What a query over tg.jobs is guaranteed to show: `spec` is the stored form (JSON text, as the
store writes it) with every string value that holds a `${NAME}` reference replaced by "***",
which is `redaction.mask_value` of the stored form, what GET /api/jobs/{name} shows (a key
holding `${...}` is masked too). The stored form never holds a resolved secret: secrets are
stored as their `${NAME}` reference (CONTRACT §3). A credential written inline in a job file
(`token: abc123`, no `${}`) is no secret by that contract: it is stored, and shown, by the API
and here alike.
"""

from __future__ import annotations

import duckdb

from tg_actors.queries import TG_TABLES
from tg_actors.store.schema import quote

MASK_CATALOG = "tg_sql"
"""The in-memory catalog of the masking views (MASK_CATALOG.tg.jobs and the other three)."""

LOCKED_SETTINGS = {
    "enable_external_access": "false",
    "autoinstall_known_extensions": "false",
    "autoload_known_extensions": "false",
}

# a JSON string (of JSON text as json.dumps writes it) that holds a ${NAME} reference: the
# match starts at the string's opening quote, as nothing outside strings holds `${`
_SECRET_STRING = r'"(?:[^"\\]|\\.)*\$\{[A-Za-z_][A-Za-z0-9_]*\}(?:[^"\\]|\\.)*"'
MASK_SPEC_SQL = f"regexp_replace(spec, '{_SECRET_STRING}', '\"***\"', 'g')"
"""SQL over tg.jobs.spec: the JSON text with each secret-holding string as "***"."""


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Lock the database the connection belongs to (see the module's docstring) and make the
    masking views. Idempotent; call it on the connection's own thread."""
    for name, value in LOCKED_SETTINGS.items():
        con.execute(f"SET {name} = {value}")
    (database,) = _one(con, "SELECT current_database()")
    if str(database).lower() == MASK_CATALOG:
        raise ValueError(f"a database file named {MASK_CATALOG!r} clashes with the read path")
    con.execute(f"ATTACH IF NOT EXISTS ':memory:' AS {MASK_CATALOG}")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {MASK_CATALOG}.tg")
    source = f"{quote(str(database))}.tg"
    for table in sorted(TG_TABLES):
        select = f"SELECT * FROM {source}.{table}"
        if table == "jobs":
            select = f"SELECT * REPLACE ({MASK_SPEC_SQL} AS spec) FROM {source}.jobs"
        if table == "state":  # a rotated oauth2 refresh token is never shown
            select = f"SELECT * EXCLUDE (refresh_token, refresh_origin) FROM {source}.state"
        con.execute(f"CREATE OR REPLACE VIEW {MASK_CATALOG}.tg.{table} AS {select}")


def open_read(base: duckdb.DuckDBPyConnection) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A new cursor of `base` in a read-only transaction over one snapshot, and the data
    tables of schema main in that snapshot. Names resolve as the parser's check assumes:
    plain names in the database's main, `tg.x` in the masking views; TIMESTAMPTZ in UTC, as
    the writer has them. Call `base.cursor()`'s callers one at a time (base is one connection)."""
    cursor = base.cursor()
    try:
        (database,) = _one(cursor, "SELECT current_database()")
        cursor.execute("SET TimeZone = 'UTC'")
        cursor.execute(f"SET search_path = '{_path_entry(str(database))},{MASK_CATALOG}.tg'")
        cursor.execute("BEGIN TRANSACTION READ ONLY")
        rows = cursor.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ?"
            " AND schema_name = 'main' ORDER BY table_name",
            [database],
        ).fetchall()
    except BaseException:
        cursor.close()
        raise
    return cursor, [str(name) for (name,) in rows]


def _path_entry(database: str) -> str:
    """`"db".main` for SET search_path (a string literal: single quotes doubled)."""
    return f"{quote(database)}.main".replace("'", "''")


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[object, ...]:
    row = con.execute(sql).fetchone()
    if row is None:
        raise RuntimeError(f"no row from {sql}")
    return tuple(row)
