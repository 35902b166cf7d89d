"""`tg sql "SELECT …" [--format table|csv|json|parquet] [-o FILE] [--url URL] [--db PATH]`.

One read-only query. While a `tg up` holds the DuckDB file (or with --url) it goes through
that system's `POST /api/sql` (tg_actors.client, token from TG_API_TOKEN or the `api_token`
file beside --db); with nothing running, the file is opened read-only here, with the same
check (queries.sql_problem) and the same locked-down read path (store.readonly: no files,
URLs or extensions, tg.jobs masked). Exit codes: 0 ok, 1 the query refused or failed, 2
usage, 3 not found (no file, no API answering, no such table).

`tg export` uses `fetch_to_file` here for a table while a `tg up` holds the file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from tg_actors.settings import Settings

OK, FAILED, USAGE, NOT_FOUND = 0, 1, 2, 3
FORMATS = ("table", "csv", "json", "parquet")
LOCAL_CATALOG = "tg_file"  # the DuckDB file's name in the query when read here
TABLE_ROWS = 1000  # the readable table shows at most these rows, and says how many there are


class Failure(Exception):
    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


def cmd_sql(args: argparse.Namespace) -> int:
    if args.format == "parquet" and args.output is None:
        return _say(USAGE, "--format parquet writes a file: give -o FILE")
    settings = Settings(**({"db_path": args.db_path} if args.db_path else {}))
    limit = TABLE_ROWS + 1 if args.format == "table" else None
    to_file = None  # through the API, a file format streams straight into the file
    if args.output is not None and args.format in ("parquet", "csv"):
        to_file = (args.output, args.format)
    try:
        table = query(settings, args.url, args.query, list(args.params), limit, to_file)
        if table is not None:
            _write(table, args.format, args.output, limit)
    except Failure as exc:
        return _say(exc.code, str(exc))
    except OSError as exc:
        return _say(FAILED, f"cannot write {args.output}: {exc}")
    return OK


def query(
    settings: Settings,
    url: str | None,
    sql: str,
    params: list[Any],
    limit: int | None = None,
    to_file: tuple[Path, str] | None = None,
) -> Any:
    """The result as a pyarrow.Table: through the API (--url, or the file held by `tg up`),
    else from the file read-only. Raises Failure. `to_file` (path, "parquet" or "csv"): an
    answer through the API streams into that file instead, and this returns None."""
    if url is None:
        db = settings.db_path
        if db.is_file():
            local = _local(db, sql, params, limit)
            if local is not None:
                return local
            if not _api_answers(settings):
                raise Failure(
                    NOT_FOUND,
                    f"{db} is held by another process (a running `tg up`?) and no API answers"
                    f" at {_base_url(settings, None)}: give that system's --url (or TG_HOST,"
                    " TG_PORT), or stop it to read the file",
                )
        elif not _api_answers(settings):
            raise Failure(
                NOT_FOUND,
                f"no DuckDB file at {db} (--db or TG_DB_PATH) and no `tg up` at "
                f"{_base_url(settings, None)} (--url)",
            )
    return _remote(settings, url, sql, params, limit, to_file)


def _base_url(settings: Settings, url: str | None) -> str:
    from tg_actors.cli.engines import base_url

    return base_url(settings, url)


def api_client(settings: Settings, url: str | None) -> Any:
    from tg_actors.client import Client

    token = settings.known_token()
    if token is None:
        raise Failure(
            USAGE,
            "no API token for the running system: set TG_API_TOKEN or point --db at the data "
            f"folder of `tg up` (looked for {settings.token_path})",
        )
    return Client(_base_url(settings, url), token, timeout=http_timeout(settings))


def http_timeout(settings: Settings) -> float:
    """The client's HTTP timeout: the API's query limit (TG_SQL_TIMEOUT, read by Settings as
    seconds or a duration such as `30s` or `2m`; a bad value fails there, exit 2) plus a
    minute for the answer to travel."""
    return settings.sql_timeout + 60.0


def _api_answers(settings: Settings) -> bool:
    import httpx

    try:
        httpx.get(f"{_base_url(settings, None)}/api/health", timeout=3.0)
    except httpx.HTTPError:
        return False
    return True


def _remote(
    settings: Settings,
    url: str | None,
    sql: str,
    params: list[Any],
    limit: int | None,
    to_file: tuple[Path, str] | None = None,
) -> Any:
    from tg_actors.client import CSV, PARQUET, ApiError

    with api_client(settings, url) as client:
        try:
            if to_file is None:
                return client.sql(sql, params, limit=limit)
            path, fmt = to_file
            accept = PARQUET if fmt == "parquet" else CSV
            path.parent.mkdir(parents=True, exist_ok=True)
            size = client.sql_to_file(sql, path, params, accept=accept, limit=limit)
            print(f"wrote {path} ({size} bytes) through the running system's API")
            return None
        except ApiError as exc:
            raise Failure(exit_code(exc.status), api_message(exc, client.url)) from exc


def exit_code(status: int) -> int:
    if status == 0 or status == 404:
        return NOT_FOUND
    if status in (401, 403):
        return USAGE
    return FAILED


def api_message(exc: Any, url: str) -> str:
    if exc.status == 0:
        return f"{exc.detail}: is `tg up` running?"
    if exc.status in (401, 403):
        return f"{exc.status}: {exc.detail} (the token of the system at {url}: TG_API_TOKEN)"
    return f"{exc.status}: {exc.detail}"


def _local(db: Path, sql: str, params: list[Any], limit: int | None) -> Any:
    """The query on the file opened read-only, or None when a `tg up` holds it."""
    import duckdb

    from tg_actors.queries import sql_problem
    from tg_actors.store.readonly import MASK_CATALOG, lock_down

    # the file attached read-only to an in-memory database, so the masking views of
    # lock_down have an in-memory catalog to live in (a read-only connection cannot make one)
    con = duckdb.connect(":memory:")
    try:
        try:
            con.execute(f"ATTACH {_literal(str(db))} AS {LOCAL_CATALOG} (READ_ONLY)")
        except duckdb.Error as exc:
            if "lock" in str(exc).lower():
                return None
            raise Failure(FAILED, f"cannot open {db}: {exc}") from exc
        con.execute(f"USE {LOCAL_CATALOG}")
        try:
            lock_down(con)
        except duckdb.CatalogException as exc:
            raise Failure(NOT_FOUND, f"{db} is no turbo-giggle database: {exc}") from exc
        # as store.readonly.open_read, on this connection (a cursor would not keep USE)
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET search_path = '{LOCAL_CATALOG}.main,{MASK_CATALOG}.tg'")
        con.execute("BEGIN TRANSACTION READ ONLY")
        found = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ?"
            " AND schema_name = 'main' ORDER BY table_name",
            [LOCAL_CATALOG],
        ).fetchall()
        tables = [str(name) for (name,) in found]
        cursor = con
        try:
            problem = sql_problem(sql, tables)
            if problem is not None:
                raise Failure(FAILED, f"refused: {problem}")
            relation = cursor.sql(sql, params=params or None)
            if relation is None:
                raise Failure(FAILED, "refused: the statement returns no rows")
            if limit is not None:
                relation = relation.limit(limit)
            return relation.to_arrow_table()
        except duckdb.Error as exc:
            raise Failure(FAILED, f"{type(exc).__name__}: {exc}") from exc
    finally:
        con.close()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _write(table: Any, fmt: str, output: Path | None, limit: int | None) -> None:
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        assert output is not None
        _aside(output, lambda tmp: pq.write_table(table, tmp))
        print(f"wrote {table.num_rows} rows to {output}")
    elif fmt == "csv":
        if output is None:
            sys.stdout.flush()
            pa_csv.write_csv(table, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            _aside(output, lambda tmp: pa_csv.write_csv(table, tmp))
    elif fmt == "json":
        text = json.dumps(table.to_pylist(), default=_jsonable, ensure_ascii=False, indent=1)
        if output is None:
            print(text)
        else:
            _aside(output, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
    else:
        _table(table, output, limit)


def _jsonable(value: Any) -> Any:
    """A JSON number for a DECIMAL (as POST /api/sql's JSON answers), else the value's text
    (timestamps in ISO form)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _table(table: Any, output: Path | None, limit: int | None) -> None:
    from rich.console import Console
    from rich.table import Table

    shown = table.slice(0, TABLE_ROWS) if limit is not None else table
    grid = Table(show_lines=False, header_style="bold")
    for field in table.schema:
        grid.add_column(f"{field.name}\n{field.type}", overflow="fold")
    for row in shown.to_pylist():
        grid.add_row(*("NULL" if v is None else str(v) for v in row.values()))
    more = table.num_rows > shown.num_rows
    count = (
        f"the first {shown.num_rows} rows shown; the result has more (--format csv or json for"
        " all of it)"
        if more
        else f"{table.num_rows} row(s)"
    )
    if output is None:
        console = Console(soft_wrap=False)
        console.print(grid)
        console.print(count)
    else:
        with output.open("w", encoding="utf-8") as f:
            console = Console(file=f, width=200)
            console.print(grid)
            console.print(count)


def _aside(output: Path, write: Any) -> None:
    """Write to a file beside `output`, then rename it there: no reader sees half a file."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


def fetch_to_file(settings: Settings, table: str, output: Path, fmt: str) -> int | None:
    """`tg export` while a `tg up` holds the file: the table through its `POST /api/sql` as
    Parquet or CSV, written aside and renamed. An exit code, or None when no API answers (the
    caller then says why the file cannot be read)."""
    from tg_actors.client import CSV, PARQUET, ApiError
    from tg_actors.store.schema import quote

    if settings.known_token() is None or not _api_answers(settings):
        return None
    accept = PARQUET if fmt == "parquet" else CSV
    with api_client(settings, None) as client:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)  # as the export of the file does
            size = client.sql_to_file(f"SELECT * FROM {quote(table)}", output, accept=accept)
        except OSError as exc:  # the folder or the file cannot be written
            return _say(
                FAILED, f"export of {table} to {output} failed: {type(exc).__name__}: {exc}"
            )
        except ApiError as exc:
            if exc.status == 0:
                return None
            missing = exc.status == 422 and any(
                words in exc.detail for words in ("no data table of that name", "does not exist")
            )
            return _say(
                NOT_FOUND if missing else exit_code(exc.status), api_message(exc, client.url)
            )
    print(f"wrote {table} to {output} through the running system's API ({size} bytes)")
    return OK


def _say(code: int, message: str) -> int:
    print(message, file=sys.stderr if code else sys.stdout)
    return code
