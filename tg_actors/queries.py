"""What a query over the live database (POST /api/sql) may be: the parser's wall.

`sql_problem(sql, tables)` says why `sql` may not run, or None: exactly one read-only
statement (SELECT, WITH ... SELECT, FROM-first, VALUES, DESCRIBE, SUMMARIZE, SHOW, PIVOT with
an IN list, UNPIVOT) that reads only

- the data tables of schema `main` (`orders`, `main.orders`; with `tables` given, only those),
- `tg.runs`, `tg.run_logs`, `tg.jobs` (its `spec` masked: store/reader.py) and `tg.state`,
- CTEs in scope, and the table functions that compute (unnest, range, generate_series).

Decided by DuckDB's own parser, never by patterns over the text: `duckdb.extract_statements`
(how many statements, of which type), then the statement's parse tree (`json_serialize_sql`)
walked by transform.py's `from_items`, the walker the transform check uses. Refused, each with
its reason: writes and DDL, COPY, ATTACH/DETACH, SET/RESET/PRAGMA, INSTALL/LOAD, CALL,
EXPORT; reading files or URLs (`read_csv(...)`, `FROM 'file.csv'`, `read_json('http://...')`);
catalog-qualified names (`db.tg.jobs` would reach the unmasked table); other schemas (`tg`
beyond those four, information_schema); functions that change state (nextval, setval,
write_log); more or fewer than one statement.

The read cursor (store/reader.py) is the second wall: a read-only transaction on a database
that cannot reach files, URLs or extensions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import duckdb

from tg_actors.transform import FROM_KINDS, TABLE_FUNCTIONS, first_line, from_items, parse_tree

NO_TABLE = "there is no data table of that name"
"""The end of the refusal of a plain name that is no table (a for_each run says which job
writes it)."""

TG_TABLES = frozenset({"runs", "run_logs", "run_checks", "jobs", "state"})
"""The tables of schema `tg` a query may read (tg.run_checkpoints and staging are internal)."""

# SHOW forms that list names, not rows: SHOW TABLES, SHOW ALL TABLES, SHOW DATABASES, SCHEMAS
_SHOW_LISTS = frozenset({"tables", "__show_tables_expanded", "databases", "schemas"})
# scalar functions that change state: sequences and DuckDB's log
_STATEFUL = frozenset({"nextval", "setval", "write_log"})
_WRITES = {
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "CREATE_FUNC",
    "DROP",
    "ALTER",
    "MERGE_INTO",
    "VACUUM",
    "ANALYZE",
}
_ONLY = "only queries run here (SELECT, DESCRIBE, SHOW ...)"
# statement kinds, by DuckDB's StatementType name: why each is refused
_REFUSED = {
    "COPY": f"COPY reads or writes files: {_ONLY}",
    "COPY_DATABASE": f"COPY reads or writes files: {_ONLY}",
    "EXPORT": f"EXPORT writes files: {_ONLY}",
    "ATTACH": f"ATTACH opens another database: {_ONLY}",
    "DETACH": f"DETACH closes a database: {_ONLY}",
    "SET": f"SET, RESET and USE change settings: {_ONLY}",
    "VARIABLE_SET": f"SET VARIABLE changes settings: {_ONLY}",
    "PRAGMA": f"PRAGMA (and IMPORT DATABASE) is not served: {_ONLY}",
    "LOAD": f"INSTALL and LOAD load extensions: {_ONLY}",
    "CALL": f"CALL runs a procedure (CHECKPOINT, pragma functions): {_ONLY}",
    "EXPLAIN": "EXPLAIN is not served: run the query itself",
    "TRANSACTION": "BEGIN, COMMIT and ROLLBACK are not served: each query runs in a read-only "
    "transaction of its own",
    "MULTI": "this statement is several for DuckDB (PIVOT without an IN list): name the "
    "pivoted values, PIVOT t ON col IN ('a', 'b') USING ...",
}


def sql_problem(sql: str, tables: Collection[str] | None = None) -> str | None:
    """Why `sql` may not run as a query over the live database, or None when it may.

    `tables`: the data tables of schema main (any case); without it, any plain name is taken
    for one (the read cursor passes them, so `FROM 'x.csv'` or a system view is refused)."""
    if not sql.strip():
        return "the query is empty: give one read-only statement (SELECT ...)"
    try:
        statements = duckdb.extract_statements(sql)
    except (duckdb.Error, RuntimeError, ValueError) as exc:
        return f"does not parse: {first_line(exc)}"
    if len(statements) != 1:
        if not statements:
            return "holds no statement: give one read-only statement (SELECT ...)"
        return f"holds {len(statements)} statements: give one read-only statement"
    try:
        kind = statements[0].type.name
    except ValueError:  # a kind this duckdb's Python API has no name for (UPDATE EXTENSIONS)
        return f"is not a query: {_ONLY}"
    if kind in _WRITES:
        return f"{kind} is not read-only: {_ONLY}"
    if kind in _REFUSED:
        return _REFUSED[kind]
    if kind != "SELECT":
        return f"{kind} statements are not served: {_ONLY}"
    tree = parse_tree(statements[0].query)
    if isinstance(tree, str):
        return f"cannot be checked: {tree}"
    known = None if tables is None else {t.lower() for t in tables}
    return _tree_problem(tree, known)


def _tree_problem(tree: dict[str, Any], tables: set[str] | None) -> str | None:
    for ref, ctes in from_items(tree):
        problem = _ref_problem(ref, ctes, tables)
        if problem is not None:
            return problem
    for name in _function_names(tree):
        if name.lower() in _STATEFUL:
            return f"calls {name}(), which changes state: only reads run here"
    return None


def _ref_problem(ref: dict[str, Any], ctes: frozenset[str], tables: set[str] | None) -> str | None:
    kind = ref["type"]
    if kind == "BASE_TABLE":
        return _table_problem(ref, ctes, tables)
    if kind == "TABLE_FUNCTION":
        function = ref.get("function") or {}
        name = str(function.get("function_name", "?"))
        if name.lower() not in TABLE_FUNCTIONS or function.get("schema") or function.get("catalog"):
            allowed = ", ".join(sorted(TABLE_FUNCTIONS))
            return (
                f"calls {name}(): no reading files, URLs or the catalog; the table functions "
                f"that run here are {allowed}"
            )
        return None
    if kind == "SHOW_REF":
        if ref.get("query") is not None:
            return None  # DESCRIBE / SUMMARIZE of a query: its FROM items are walked too
        if ref.get("show_type") == "SHOW_SPECIAL":
            name = str(ref.get("table_name", "")).strip('"').lower()
            return None if name in _SHOW_LISTS else f"SHOW {name} is not served"
        return _table_problem(ref, ctes, tables)  # SHOW name: that table's columns
    if kind not in FROM_KINDS:
        return f"uses {kind} in FROM, which is not served"
    return None


def _table_problem(
    ref: dict[str, Any], ctes: frozenset[str], tables: set[str] | None
) -> str | None:
    catalog = str(ref.get("catalog_name") or "")
    schema = str(ref.get("schema_name") or "").lower()
    name = str(ref.get("table_name") or "")
    shown = ".".join(p for p in (catalog, schema, name) if p)
    if catalog:
        return f"reads {shown!r}: name tables without a database (orders, main.orders, tg.runs)"
    if schema == "tg":
        if name.lower() in TG_TABLES:
            return None
        allowed = ", ".join(f"tg.{t}" for t in sorted(TG_TABLES))
        return f"reads {shown!r}: of schema tg, only {allowed} may be read"
    if schema and schema != "main":
        return f"reads {shown!r}: only the data tables (schema main) and tg's tables may be read"
    if not schema and name.lower() in ctes:
        return None
    if any(c in name for c in "./\\:*?"):
        return f"reads {name!r}: no reading files or URLs, only the tables of this database"
    if tables is not None and name.lower() not in tables:
        return f"reads {shown!r}: {NO_TABLE}"
    return None


def _function_names(node: Any) -> Iterator[str]:
    """The name of every function call anywhere in the tree (scalar, aggregate, window)."""
    if isinstance(node, list):
        for item in node:
            yield from _function_names(item)
    elif isinstance(node, dict):
        if node.get("class") in ("FUNCTION", "WINDOW") and "function_name" in node:
            yield str(node["function_name"])
        for value in node.values():
            yield from _function_names(value)


def select_names(sql: str) -> list[str] | None:
    """The column names one SELECT gives, from its parse tree, when each item names itself
    (an alias or a plain column); None when not known before it runs (`*`, an expression
    without alias, not one SELECT)."""
    try:
        statements = duckdb.extract_statements(sql)
    except (duckdb.Error, RuntimeError, ValueError):
        return None
    if len(statements) != 1 or statements[0].type.name != "SELECT":
        return None
    tree = parse_tree(statements[0].query)
    if isinstance(tree, str):
        return None
    try:
        node = tree["statements"][0]["node"]
    except (KeyError, IndexError, TypeError):
        return None
    if node.get("type") != "SELECT_NODE":
        return None
    names = []
    for item in node.get("select_list") or []:
        if item.get("alias"):
            names.append(str(item["alias"]))
        elif item.get("class") == "COLUMN_REF" and item.get("column_names"):
            names.append(str(item["column_names"][-1]))
        else:
            return None
    return names
