"""Schema evolution: which column type changes are applied, and how a table is altered.

A batch (or a run's staged rows) is compared column by column with the relation it goes into:

* a new column is added;
* the same type, or one the existing type already holds (BIGINT into DOUBLE), changes nothing;
* a compatible widening alters the existing column in place (ALTER ... TYPE): integer ->
  wider integer -> DOUBLE, integer/DECIMAL -> DECIMAL (precision grown to hold both, DOUBLE
  past 38 digits) or DOUBLE, FLOAT -> DOUBLE, DATE -> TIMESTAMP (any precision, or
  TIMESTAMPTZ), a coarser timestamp -> a finer one of the same kind, "NULL" (the type DuckDB
  keeps for an all-null nested child, e.g. an empty list's element) -> any type, a STRUCT
  that gains fields and a LIST whose element type widens, both recursively;
* anything else is incompatible: BIGINT vs VARCHAR either way, BOOLEAN vs BIGINT, TIMESTAMP vs
  TIMESTAMPTZ, a STRUCT vs a scalar, a STRUCT field whose type is incompatible, MAP/ARRAY/UNION
  types that differ at all. It raises DestinationError naming the column and both types,
  unless `widen_to_varchar` is set: then the column becomes VARCHAR, existing values cast to
  text; nested values (STRUCT, LIST, MAP, ...) become JSON text (`to_json`), scalars the
  usual CAST text. With the flag, a VARCHAR column then takes rows of any type as text.

STRUCTs: DuckDB 2.0.1 casts STRUCT to STRUCT by field name (case-insensitively), filling a
missing field with NULL, and so ALTER ... TYPE to the wider STRUCT keeps every value. The same
cast silently DROPS a field the target type lacks, which is why the target is always widened
before rows go in. Incompatibility is decided per top-level column: one bad STRUCT field turns
the whole column into JSON text (with the flag), never half of it.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
from duckdb import sqltypes
from duckdb.sqltypes import DuckDBPyType

from tg_actors.errors import DestinationError
from tg_actors.store.schema import quote

Columns = dict[str, tuple[str, DuckDBPyType]]  # lower(name) -> (name, type)

# duckdb's constants: parsing a type's name (DuckDBPyType("VARCHAR")) opens DuckDB's default
# in-memory database, 20 ms at import and a database no one uses
VARCHAR = sqltypes.VARCHAR
_DOUBLE = sqltypes.DOUBLE
_SIGNED = {"tinyint": 8, "smallint": 16, "integer": 32, "bigint": 64, "hugeint": 128}
_UNSIGNED = {"utinyint": 8, "usmallint": 16, "uinteger": 32, "ubigint": 64, "uhugeint": 128}
_BY_BITS = {8: "TINYINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT", 128: "HUGEINT"}
_DIGITS = {"tinyint": 3, "smallint": 5, "integer": 10, "bigint": 19, "hugeint": 39}
_DIGITS |= {"utinyint": 3, "usmallint": 5, "uinteger": 10, "ubigint": 20, "uhugeint": 39}
_FLOATS = frozenset({"float", "double"})
_NUMERIC = frozenset(_SIGNED) | frozenset(_UNSIGNED) | _FLOATS | {"decimal"}
# finer precision ranks higher; naive and aware timestamps never mix
_NAIVE = {"timestamp_s": 0, "timestamp_ms": 1, "timestamp": 2, "timestamp_ns": 3}
_AWARE = {"timestamp with time zone": 2, "timestamptz_ns": 3}
NESTED = frozenset({"struct", "list", "map", "array", "union"})
HINT = "set destination.widen_to_varchar: true to store it as VARCHAR"


def widen(old: DuckDBPyType, new: DuckDBPyType) -> DuckDBPyType | None:
    """The type a column of type `old` must have to also take values of type `new`.

    `old` itself when it already holds them; None when the change is incompatible.
    """
    a, b = str(old.id), str(new.id)
    if old == new or b == "null" or (a == b == "varchar"):  # VARCHAR vs JSON: both text
        return old
    if a == "null":
        return new
    if a in _NUMERIC and b in _NUMERIC:
        return _numeric(old, new)
    if a == "date" and (b in _NAIVE or b in _AWARE):
        return new
    if b == "date" and (a in _NAIVE or a in _AWARE):
        return old
    for ranks in (_NAIVE, _AWARE):
        if a in ranks and b in ranks:
            return old if ranks[a] >= ranks[b] else new
    if a == b == "struct":
        return _struct(old, new)
    if a == b == "list":
        child = widen(_kids(old)[0][1], _kids(new)[0][1])
        return None if child is None else DuckDBPyType(f"{child}[]")
    return None


def _numeric(old: DuckDBPyType, new: DuckDBPyType) -> DuckDBPyType:
    a, b = str(old.id), str(new.id)
    if a in _FLOATS or b in _FLOATS:  # FLOAT only with FLOAT: FLOAT | BIGINT would round
        return old if a == b == "float" else _DOUBLE
    if a == "decimal" or b == "decimal":
        (int_a, scale_a), (int_b, scale_b) = _digits(old), _digits(new)
        scale = max(scale_a, scale_b)
        precision = max(int_a, int_b) + scale
        return DuckDBPyType(f"DECIMAL({precision},{scale})") if precision <= 38 else _DOUBLE
    if (a in _SIGNED) == (b in _SIGNED):  # same signedness: the wider one
        bits = _SIGNED | _UNSIGNED
        return old if bits[a] >= bits[b] else new
    signed, unsigned = (a, b) if a in _SIGNED else (b, a)
    if _SIGNED[signed] > _UNSIGNED[unsigned]:
        return DuckDBPyType(_BY_BITS[_SIGNED[signed]])
    wider = 2 * _UNSIGNED[unsigned]
    return DuckDBPyType(_BY_BITS[wider]) if wider in _BY_BITS else _DOUBLE


def _digits(t: DuckDBPyType) -> tuple[int, int]:
    """(digits before the point, scale) of an integer or DECIMAL type."""
    if str(t.id) != "decimal":
        return _DIGITS[str(t.id)], 0
    params = {name: value for name, value in t.children if isinstance(value, int)}
    return params["precision"] - params["scale"], params["scale"]


def _struct(old: DuckDBPyType, new: DuckDBPyType) -> DuckDBPyType | None:
    fields = {name.lower(): (name, ty) for name, ty in _kids(old)}  # names are case-insensitive
    changed = False
    for name, ty in _kids(new):
        key = name.lower()
        current = fields.get(key)
        wider = ty if current is None else widen(current[1], ty)
        if wider is None:
            return None
        if current is None or wider != current[1]:
            fields[key], changed = (current[0] if current else name, wider), True
    if not changed:
        return old
    spec = ", ".join(f"{quote(name)} {ty}" for name, ty in fields.values())
    return DuckDBPyType(f"STRUCT({spec})")


def _kids(t: DuckDBPyType) -> list[tuple[str, DuckDBPyType]]:
    return [(name, ty) for name, ty in t.children if isinstance(ty, DuckDBPyType)]


def as_text(expr: str, source: DuckDBPyType) -> str:
    """SQL turning `expr` of type `source` into VARCHAR: JSON for nested values."""
    if str(source.id) == "varchar":
        return expr
    if str(source.id) in NESTED:
        return f"CAST(to_json({expr}) AS VARCHAR)"
    return f"CAST({expr} AS VARCHAR)"


def select_list(source: Columns, target: Columns) -> str:
    """`source`'s columns as the SELECT list for an insert into `target` (evolved already)."""
    out = []
    for key, (name, ty) in source.items():
        column = quote(name)
        into = target.get(key)
        if into is not None and str(into[1].id) == "varchar" and str(ty.id) != "varchar":
            out.append(f"{as_text(column, ty)} AS {column}")
        else:
            out.append(column)
    return ", ".join(out)


def evolve(
    con: duckdb.DuckDBPyConnection,
    relation: str,
    have: Columns,
    incoming: Columns,
    *,
    widen_to_varchar: bool,
    where: str,
    old_label: str,
    new_label: str,
) -> Columns:
    """Alter `relation` (columns `have`) so it takes `incoming`; return its new columns.

    Checks every column before altering any, so an incompatible one changes nothing. Run it
    inside the caller's transaction. The error reads `{where}: column c is OLD {old_label} but
    NEW {new_label}; set destination.widen_to_varchar: ...`.
    """
    plan: list[tuple[str, DuckDBPyType, DuckDBPyType | None]] = []  # (name, type, None=add)
    for key, (name, new) in incoming.items():
        if key not in have:
            plan.append((name, new, None))
            continue
        column, old = have[key]
        wider = widen(old, new)
        if wider is None:
            if not widen_to_varchar:
                raise DestinationError(
                    f"{where}: column {_show(column)} is {old} {old_label} but {new}"
                    f" {new_label}; {HINT}"
                )
            wider = VARCHAR
        if wider != old:
            plan.append((column, wider, old))
    result = dict(have)
    for name, ty, before in plan:
        if before is None:
            con.execute(f"ALTER TABLE {relation} ADD COLUMN {quote(name)} {ty}")
        else:
            using = f" USING {as_text(quote(name), before)}" if ty == VARCHAR else ""
            con.execute(f"ALTER TABLE {relation} ALTER COLUMN {quote(name)} TYPE {ty}{using}")
        result[name.lower()] = (name, ty)
    return result


def _show(name: str) -> str:
    """A column name as the error shows it: bare when it is a plain identifier."""
    return name if name.isidentifier() and name.isascii() else quote(name)


def column_changes(
    have: Mapping[str, str], incoming: list[tuple[str, str]], *, widen_to_varchar: bool
) -> list[str]:
    """What `evolve` would do to a table with columns `have` ({name: type}) for each of the
    `incoming` (name, type) columns, in words (a test read shows it): `new column`,
    `unchanged`, `widens OLD -> NEW`, `becomes VARCHAR (was OLD)`, or `incompatible: ...`,
    the error the run would end with."""
    known = {name.lower(): (name, kind) for name, kind in have.items()}
    changes = []
    for name, text in incoming:
        if name.lower() not in known:
            changes.append("new column")
            continue
        column, old_text = known[name.lower()]
        try:
            old, new = DuckDBPyType(old_text), DuckDBPyType(text)
        except (duckdb.Error, TypeError, ValueError):
            changes.append("unchanged" if old_text == text else f"{old_text} -> {text}")
            continue
        wider = widen(old, new)
        if wider is None:
            changes.append(
                f"becomes VARCHAR (was {old})"
                if widen_to_varchar
                else f"incompatible: column {_show(column)} is {old} but {new} here; {HINT}"
            )
        elif wider == old:
            changes.append("unchanged")
        else:
            changes.append(f"widens {old} -> {wider}")
    return changes
