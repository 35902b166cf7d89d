"""`destination.schema_contract`: what a run whose rows do not fit the existing table does,
and the diff of columns a commit logs when it changed the table.

Rows *fit* a table when every column is one the table has, of a type it already holds
(evolve.widen gives the table's own type back). Otherwise, by the contract:

* evolve (the default): evolve.py adds the columns and widens the types;
* freeze: SchemaFrozen names the new and the changed columns; the commit rolls back and the
  run fails for good (the next run's rows would not fit either);
* discard_columns: a new column is dropped; a changed column keeps the table's type, a value
  that does not convert to it and back unchanged becomes NULL;
* discard_rows: a row with a value in a new column, or a value that does not convert so, is
  dropped (and counted); the other rows go in as with discard_columns.

A table's first run creates it, whatever the contract. Everything here runs inside the
commit transaction, over the relation being committed (staging or the run's Arrow batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from tg_actors.errors import SchemaFrozen
from tg_actors.jobs import SchemaContract
from tg_actors.store.evolve import Columns, widen
from tg_actors.store.schema import one, quote

FIT_VIEW = "_tg_fit_rows"  # temporary, inside the commit transaction only
SEQ = "__tg_seq"


@dataclass(frozen=True, slots=True)
class Fitted:
    """The relation to write (the source itself, or FIT_VIEW over it), its rows, and the
    rows discard_rows dropped."""

    source: str
    rows: int
    discarded: int = 0
    note: str | None = None  # what the contract dropped, for the run's logs


def fit(
    con: duckdb.DuckDBPyConnection,
    source: str,
    rows: int,
    have: Columns | None,
    incoming: Columns,
    contract: SchemaContract,
    table: str,
) -> Fitted:
    """Apply `contract` to the `rows` of `source` (columns `incoming`, SEQ left out) going
    into a table with columns `have` (None: no table yet)."""
    if contract is SchemaContract.EVOLVE or have is None:
        return Fitted(source, rows)
    new = [key for key in incoming if key not in have]
    changed = [
        key
        for key in incoming
        if key in have and widen(have[key][1], incoming[key][1]) != have[key][1]
    ]
    if not new and not changed:
        return Fitted(source, rows)
    if contract is SchemaContract.FREEZE:
        raise SchemaFrozen(
            table,
            [f"{incoming[k][0]} {incoming[k][1]}" for k in new],
            [f"{have[k][0]} {have[k][1]} -> {incoming[k][1]}" for k in changed],
        )
    select, keep = [], []
    for key, (name, ty) in incoming.items():
        column = quote(name)
        if key in new:
            keep.append(f"{column} IS NULL")
        elif key in changed:
            old = have[key][1]
            converted = f"TRY_CAST({column} AS {old})"
            fits = f"TRY_CAST({converted} AS {ty}) IS NOT DISTINCT FROM {column}"
            select.append(f"CASE WHEN {fits} THEN {converted} END AS {column}")
            keep.append(fits)
        else:
            select.append(column)
    what = []
    if new:
        what.append("new column(s) " + ", ".join(incoming[k][0] for k in new) + " not stored")
    if changed:
        what.append(
            ", ".join(
                f"{have[k][0]} ({incoming[k][1]}, the table has {have[k][1]})" for k in changed
            )
            + (
                " kept where they convert"
                if contract is SchemaContract.DISCARD_ROWS
                else " converted, NULL where they do not"
            )
        )
    note = f"schema_contract {contract.value}: " + "; ".join(what)
    where = ""
    if contract is SchemaContract.DISCARD_ROWS and keep:
        where = " WHERE " + " AND ".join(f"({k})" for k in keep)
    columns = ", ".join([*select, SEQ])
    con.execute(f"CREATE OR REPLACE TEMP VIEW {FIT_VIEW} AS SELECT {columns} FROM {source}{where}")
    if not where:
        return Fitted(FIT_VIEW, rows, 0, note)
    kept_row = one(con, f"SELECT count(*) FROM {FIT_VIEW}")
    kept = int(kept_row[0]) if kept_row else 0
    note += f"; {rows - kept} of {rows} rows did not fit and were dropped"
    return Fitted(FIT_VIEW, kept, rows - kept, note)


def drop_fit(con: duckdb.DuckDBPyConnection, fitted: Fitted | None) -> None:
    """Drop FIT_VIEW when `fit` made it (inside the commit transaction)."""
    if fitted is not None and fitted.source == FIT_VIEW:
        con.execute(f"DROP VIEW IF EXISTS {FIT_VIEW}")


def column_diff(before: Columns | None, after: Columns, incoming: Columns) -> str | None:
    """The change a commit made to its table's columns, as one log line, or None when there
    was none: `added c VARCHAR; b BIGINT -> DOUBLE; not in this run's rows (NULL): x`."""
    if before is None:
        return None
    added = [f"{after[k][0]} {after[k][1]}" for k in after if k not in before]
    widened = [
        f"{after[k][0]} {before[k][1]} -> {after[k][1]}"
        for k in after
        if k in before and after[k][1] != before[k][1]
    ]
    missing = [before[k][0] for k in before if k not in incoming]
    parts = []
    if added:
        parts.append("added " + ", ".join(added))
    if widened:
        parts.append("changed " + ", ".join(widened))
    if not parts:
        return None
    if missing:
        parts.append("not in this run's rows (NULL there): " + ", ".join(missing))
    return "; ".join(parts)
