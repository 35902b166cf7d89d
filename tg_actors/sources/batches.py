"""Records -> Arrow: one column per key, types inferred per column (the engine's pages)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from itertools import chain, repeat
from typing import Any

import pyarrow as pa


def records_to_arrow(records: list[dict[str, Any]]) -> pa.Table:
    """One column per key seen in any record (first-seen order), missing values null.

    Types are inferred per column over all rows (not from the first row, as
    `pa.Table.from_pylist` does): objects become STRUCT, lists LIST, int mixed with float
    DOUBLE, an all-null column stays NULL. A column whose values Arrow cannot unify (int and
    str, say) becomes strings, non-strings as JSON text, rather than failing the page.

    No Python code runs per row: keys are united by `set.union`, each column is gathered by
    `map(dict.get, ...)` and converted by `pa.array`, all in C/C++. 1,000 rows of 12 fields
    take ~0.8 ms here, against 1.1 ms for a list comprehension per column and 1.2 ms for
    `pa.Table.from_struct_array(pa.array(records))` (bench/convert_bench.py).
    """
    names = _names(records)
    if not names:
        return pa.table({})  # no records, or only empty ones
    columns = [_column(list(map(dict.get, records, repeat(name)))) for name in names]
    return pa.Table.from_arrays(columns, names=names)


def _names(records: list[dict[str, Any]]) -> list[str]:
    """Every key of every record, in first-seen order."""
    if not records:
        return []
    first = records[0]
    # the common page: no record has a key the first lacks (the union proves it at C speed)
    if len(set().union(*records)) == len(first):
        return list(first)
    return list(dict.fromkeys(chain.from_iterable(records)))


def _column(values: list[Any]) -> pa.Array:
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([_text(v) for v in values], type=pa.string())
    # never string_view: Ray's Arrow serializer falls back to a slow path on it
    return array.cast(pa.string()) if pa.types.is_string_view(array.type) else array


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def with_columns(table: pa.Table, values: Mapping[str, Any]) -> pa.Table:
    """`table` with a column per `values` item, every row holding that value (a for_each
    row's `include`), replacing a column of the same name."""
    for name, value in values.items():
        column = pa.array([value] * table.num_rows)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, column)
        else:
            table = table.append_column(name, column)
    return table
