"""`transform.sql` over a page's records in a throwaway, sandboxed DuckDB, and the check that
a job's transform is one read-only SELECT over `records` (job validation calls it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa

from tg_actors.errors import TransformError

# what one transform may use: DuckDB's memory (a sort or an aggregate must fit), one thread
# (an engine runs several runs at once), and the Arrow result it hands back (rows streamed
# out of DuckDB are beyond its memory limit: `range(10^12)` would otherwise fill the engine)
TRANSFORM_MEMORY_LIMIT = "256MB"
TRANSFORM_THREADS = 1
TRANSFORM_MAX_OUTPUT_BYTES = 256 * 1024 * 1024
_OUTPUT_BATCH_ROWS = 64 * 1024

# transform SQL comes from job files and the API: no files, no network, no extensions, no
# spilling to disk, capped memory and threads, and no way for the SQL to switch that back on
_SANDBOX: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "memory_limit": TRANSFORM_MEMORY_LIMIT,
    "threads": TRANSFORM_THREADS,
    "temp_directory": "",
    "lock_configuration": True,
}


def apply_transform(table: pa.Table, sql: str) -> pa.Table:
    """Run `sql` over `table`, known to it as the relation `records`. Raises TransformError."""
    if table.num_columns == 0:
        return table  # no records (DuckDB cannot register a table without columns)
    con = duckdb.connect(config=_SANDBOX)
    try:
        con.register("records", table)
        relation = con.sql(sql)
        if relation is None:
            raise TransformError("transform.sql must be a query over `records` (SELECT ...)")
        return _bounded_result(relation)
    except duckdb.Error as exc:
        raise TransformError(f"transform.sql failed: {exc}") from exc
    finally:
        con.close()


def _bounded_result(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    """The result as one Arrow table, read batch by batch and refused once it passes
    TRANSFORM_MAX_OUTPUT_BYTES (to_arrow_table would gather it all first)."""
    reader = relation.to_arrow_reader(batch_size=_OUTPUT_BATCH_ROWS)
    batches: list[pa.RecordBatch] = []
    size = 0
    for batch in reader:
        size += batch.nbytes
        if size > TRANSFORM_MAX_OUTPUT_BYTES:
            reader.close()
            limit = TRANSFORM_MAX_OUTPUT_BYTES // (1024 * 1024)
            raise TransformError(
                f"transform.sql failed: its result holds more than {limit} MiB "
                f"(after {sum(b.num_rows for b in batches):,} rows); a transform maps the "
                "records of a page or a run, it does not generate data"
            )
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=reader.schema)


# -- validation: what a transform may be -------------------------------------------------------

# table functions a transform may call in FROM: they compute, they read nothing
TABLE_FUNCTIONS = frozenset({"unnest", "range", "generate_series"})
# kinds of FROM items (DuckDB's TableReferenceType) a transform may use besides those checked
FROM_KINDS = frozenset({"BASE_TABLE", "TABLE_FUNCTION", "JOIN", "SUBQUERY", "EXPRESSION_LIST"})
FROM_KINDS |= {"EMPTY", "PIVOT"}


def transform_sql_problem(sql: str) -> str | None:
    """Why `sql` cannot be a transform, or None when it can: exactly one read-only SELECT
    (or WITH ... SELECT, FROM ...) that reads `records` and no other table, file or table
    function. Decided by DuckDB's own parser (`extract_statements`, then the statement's parse
    tree from `json_serialize_sql`), not by patterns over the text. The sandbox of
    `apply_transform` stays as the second wall."""
    return _select_problem(sql, _TRANSFORM)


def check_sql_problem(sql: str) -> str | None:
    """Why `sql` cannot be a `checks` query, or None: the transform's rules, over `records`
    and `target` (store/checks.py runs it inside the commit transaction)."""
    return _select_problem(sql, _CHECK)


class _Reads:
    """The relations a kind of query may read, and how its errors name them."""

    def __init__(self, what: str, relations: frozenset[str]) -> None:
        self.what, self.relations = what, relations
        self.shown = " and ".join(f"`{r}`" for r in sorted(relations))


_TRANSFORM = _Reads("a transform", frozenset({"records"}))
_CHECK = _Reads("a check", frozenset({"records", "target"}))


def _select_problem(sql: str, reads: _Reads) -> str | None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        return f"does not parse: {first_line(exc)}"
    if len(statements) != 1:
        count = len(statements)
        return "holds no statement" if not count else f"holds {count} statements; give one SELECT"
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        return f"must be a SELECT over {reads.shown} (read-only), not {kind.name}"
    tree = parse_tree(statements[0].query)
    if isinstance(tree, str):
        return f"cannot be checked: {tree}"
    return _tree_problem(tree, reads)


_parser: duckdb.DuckDBPyConnection | None = None
_parser_lock = threading.Lock()


def _parser_cursor() -> duckdb.DuckDBPyConnection:
    """A cursor of the one sandboxed in-memory database this process parses with: a new
    database per parse cost more than the query it checks (POST /api/sql parses each one)."""
    global _parser
    with _parser_lock:
        if _parser is None:
            _parser = duckdb.connect(config=_SANDBOX)
        return _parser.cursor()


def parse_tree(query: str) -> dict[str, Any] | str:
    """DuckDB's parse tree of one SELECT statement (`json_serialize_sql`, in the sandbox), or
    why there is none (DuckDB serializes SELECT statements only)."""
    con = _parser_cursor()
    try:
        row = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [query]).fetchone()
    except duckdb.Error as exc:
        return first_line(exc)
    finally:
        con.close()
    tree = json.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        return str(tree.get("error_message", "no parse tree"))
    return dict(tree)


def _tree_problem(tree: dict[str, Any], reads: _Reads) -> str | None:
    only = f"{reads.what} reads only {reads.shown}"
    reads_records = False
    for ref, ctes in from_items(tree):
        kind = ref["type"]
        if kind == "BASE_TABLE":
            name = str(ref.get("table_name", ""))
            qualified = ".".join(
                p for p in (ref.get("catalog_name"), ref.get("schema_name"), name) if p
            )
            if qualified.lower() not in ctes | reads.relations:
                return f"reads {qualified!r}: {only}"
            reads_records = reads_records or name.lower() in reads.relations
        elif kind == "TABLE_FUNCTION":
            function = ref.get("function") or {}
            name = str(function.get("function_name", "?"))
            if name.lower() not in TABLE_FUNCTIONS or function.get("schema"):
                return f"calls {name}(): {only}"
        elif kind == "SHOW_REF":
            return f"DESCRIBE, SHOW and SUMMARIZE are not allowed; give a SELECT over {reads.shown}"
        elif kind not in FROM_KINDS:
            return f"uses {kind} in FROM; give a SELECT over {reads.shown}"
    if not reads_records:
        return f"must read from {reads.shown} (SELECT ... FROM records)"
    return None


def from_items(
    node: Any, ctes: frozenset[str] = frozenset()
) -> Iterator[tuple[dict[str, Any], frozenset[str]]]:
    """Every FROM item (table reference) anywhere in the tree, subqueries and CTEs included
    (the dicts with a `type` and an `alias` that are neither expressions nor query nodes),
    each with the CTE names in scope where it stands, as DuckDB binds them: a query node's
    WITH is seen by that node and what it holds, and not outside it (an enclosing query, the
    other side of a UNION); a CTE's body sees the CTEs before it in its WITH, not itself nor
    the ones after it (those names there are tables); a recursive CTE's name is seen by the
    recursive part only, not by the anchor."""
    if isinstance(node, list):
        for item in node:
            yield from from_items(item, ctes)
        return
    if not isinstance(node, dict):
        return
    if (
        isinstance(node.get("type"), str)
        and "alias" in node
        and "class" not in node
        and "modifiers" not in node
    ):
        yield node, ctes
    inner = ctes
    cte_map = node.get("cte_map")
    if isinstance(cte_map, dict):
        for entry in cte_map.get("map") or []:
            yield from from_items(entry.get("value"), inner)
            inner = inner | {str(entry.get("key", "")).lower()}
    recursive = node.get("type") == "RECURSIVE_CTE_NODE"
    for key, value in node.items():
        if key == "cte_map":
            continue
        if recursive and key == "right":
            yield from from_items(value, inner | {str(node.get("cte_name", "")).lower()})
        else:
            yield from from_items(value, inner)


def first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
