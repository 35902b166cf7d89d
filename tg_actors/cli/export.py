"""`tg export TABLE -o FILE`: one data table into a Parquet or CSV file (by the file's suffix).

It opens the DuckDB file read-only and streams the table into FILE (store/export.py: written
aside and renamed, batch by batch). While a `tg up` holds the file no other process can open
it, not even read-only; then it says so, and where that system's own export file of the table
is (`destination.export: parquet`). Exit codes: 0 written, 1 failed, 2 usage, 3 not found (no
such file or table) or the file held by a running `tg up`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tg_actors.jobs import TABLE_NAME
from tg_actors.settings import Settings

OK, FAILED, USAGE, NOT_FOUND = 0, 1, 2, 3


def cmd_export(args: argparse.Namespace) -> int:
    # imported here: the other commands start without DuckDB and Arrow
    import duckdb
    import pyarrow as pa

    from tg_actors.errors import TableNotFound
    from tg_actors.store.export import format_of, write_table
    from tg_actors.store.tables import list_tables

    settings = Settings(**({"db_path": args.db_path} if args.db_path else {}))
    db, table, output = settings.db_path, args.table, args.output
    try:
        fmt = format_of(output)
    except ValueError as exc:
        return _say(USAGE, str(exc))
    if not TABLE_NAME.fullmatch(table):
        return _say(USAGE, f"invalid table name {table!r} (letters, digits, _; not a digit first)")
    if not db.is_file():
        return _say(NOT_FOUND, f"no DuckDB file at {db} (--db or TG_DB_PATH)")
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            return _say(FAILED, f"cannot open {db}: {exc}")
        from tg_actors.cli.sql import fetch_to_file  # through the running system's API

        through_api = fetch_to_file(settings, table, output, fmt)
        return through_api if through_api is not None else _say(NOT_FOUND, _held(db, table))
    try:
        con.execute("SET TimeZone = 'UTC'")  # TIMESTAMPTZ columns in UTC, as the Database has them
        rows = write_table(con, table, output, fmt=fmt)
    except TableNotFound:
        names = ", ".join(t["name"] for t in list_tables(con)) or "none"
        return _say(NOT_FOUND, f"no table named {table!r} in {db} (tables: {names})")
    except (duckdb.Error, pa.ArrowException, OSError) as exc:
        return _say(FAILED, f"export of {table} to {output} failed: {type(exc).__name__}: {exc}")
    finally:
        con.close()
    print(f"wrote {rows} rows of {table} to {output}")
    return OK


def _held(db: Path, table: str) -> str:
    from tg_actors.store.export import export_path

    lines = [
        f"{db} is held by a running `tg up` (DuckDB lets one process open the file, not even"
        " read-only beside it).",
        "Stop `tg up` and run `tg export` again, or give the job `destination.export: parquet`:",
        f"the running system then rewrites {export_path(db, table)} after each commit.",
    ]
    existing = export_path(db, table)
    if existing.is_file():
        lines.append(f"That file is there now: {existing} (as of the table's last export).")
    return "\n".join(lines)


def _say(code: int, message: str) -> int:
    print(message, file=sys.stderr if code else sys.stdout)
    return code
