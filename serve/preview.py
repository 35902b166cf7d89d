"""The test read as the API and `tg preview` answer it: engine/preview.py's read of the
source, with what only the database knows looked up first (the `for_each.sql` rows, the
committed cursor) and the columns compared with the existing table (store/evolve.py: what
schema evolution would do). Every lookup is a read-only query (`Lookup.sql`: the running
system's `/api/sql` path, or the file opened read-only), so nothing is written."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tg_actors.engine.preview import Known, preview_job
from tg_actors.errors import TGError
from tg_actors.jobs import JobSpec, SchemaContract, WriteMode
from tg_actors.store.evolve import column_changes

# a read-only query -> its rows as dicts; None: no database to ask
Sql = Callable[[str, list[Any]], Awaitable[list[dict[str, Any]] | None]]
FOR_EACH_ROWS = 20  # the preview reads the first row; a few more tell "there are more"

# (the read path refuses information_schema and duckdb_columns(): SHOW is a plain read)
_COLUMNS = (
    "SELECT column_names, column_types FROM (SHOW ALL TABLES) WHERE schema = 'main' AND name = ?"
)
_CURSOR = "SELECT cursor FROM tg.state WHERE job = ?"


async def test_read(
    spec: JobSpec, sql: Sql, *, pages: int, records: int, stored: bool = True
) -> dict[str, Any]:
    """The answer of CONTRACT §7.5's preview routes. `stored`: the job is saved, so its
    committed cursor applies (an unsaved one reads as a first run would)."""
    warnings: list[str] = []
    rows = None
    for_each = spec.source.for_each
    if for_each is not None and for_each.sql is not None:
        try:
            rows = await sql(f"SELECT * FROM ({for_each.sql}) LIMIT {FOR_EACH_ROWS}", [])
        except TGError as exc:
            warnings.append(f"for_each.sql failed: {exc}")
            rows = []
    cursor = None
    if stored and spec.source.incremental is not None:
        found = await _quiet(sql, _CURSOR, [spec.name])
        cursor = found[0]["cursor"] if found else None
    answer = await preview_job(spec, pages=pages, records=records, known=Known(rows, cursor))
    answer["warnings"][:0] = warnings
    have = await _quiet(sql, _COLUMNS, [spec.destination.table])
    if have is None:
        return answer
    answer["table_exists"] = bool(have)
    if not have:
        for column in answer["columns"]:
            column["change"] = "new column"
        return answer
    if spec.destination.write is WriteMode.REPLACE:
        for column in answer["columns"]:
            column["change"] = "the table is replaced"
        return answer
    existing = dict(zip(have[0]["column_names"], have[0]["column_types"], strict=True))
    incoming = [(column["name"], column["type"]) for column in answer["columns"]]
    changes = column_changes(existing, incoming, widen_to_varchar=spec.destination.widen_to_varchar)
    contract = spec.destination.schema_contract
    for column, change in zip(answer["columns"], changes, strict=True):
        if contract is not SchemaContract.EVOLVE and change != "unchanged":
            change = f"{change}; schema_contract {contract.value}: " + _CONTRACT_SAYS[contract]
        column["change"] = change
        evolving = contract is SchemaContract.EVOLVE and change.startswith("incompatible")
        if evolving or (contract is SchemaContract.FREEZE and change != "unchanged"):
            answer["warnings"].append(f"destination: column {column['name']}: {change}")
    return answer


_CONTRACT_SAYS = {
    SchemaContract.FREEZE: "the run would fail, nothing committed",
    SchemaContract.DISCARD_COLUMNS: "a new column is dropped; a changed one keeps the table's"
    " type (NULL where a value does not convert)",
    SchemaContract.DISCARD_ROWS: "rows with a value here that does not fit are dropped",
}


async def _quiet(sql: Sql, query: str, params: list[Any]) -> list[dict[str, Any]] | None:
    """A lookup that may find nothing: None when there is no database (or it refuses)."""
    try:
        return await sql(query, params)
    except TGError:
        return None
