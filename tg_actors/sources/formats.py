"""`source.format`: JSON lines and CSV bodies made into Arrow, and gzip bodies decoded.

A `json` body goes through `records.select_records` as ever (this module only decodes a gzip
file for it). A `jsonl` body (one JSON object a line) is read by `pyarrow.json.read_json`, a
`csv` body (a header row, then rows) by `pyarrow.csv.read_csv`: in C++, with no Python object
per row. CSV types are inferred, or given by `source.columns`: a list of names reads those
columns (in that order, the others dropped); a mapping {name: type} also gives their types,
DuckDB names (BIGINT, DOUBLE, VARCHAR, DATE, TIMESTAMP, TIMESTAMPTZ, DECIMAL(18,2), ...) or
Arrow ones (int64, float64, string, date32, timestamp[ms], ...).

Gzip: httpx already decodes a body sent with `Content-Encoding: gzip`; a gzip *file*
(`Content-Type: application/gzip` or `application/x-gzip`, or a body starting with the gzip
magic bytes 1f 8b) is decoded here, up to `max_bytes` decoded.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from tg_actors.errors import SourceError
from tg_actors.redaction import MASK
from tg_actors.sources.batches import records_to_arrow

Format = Literal["json", "jsonl", "csv"]
Columns = Mapping[str, str] | Sequence[str] | None

GZIP_MAGIC = b"\x1f\x8b"
GZIP_TYPES = frozenset({"application/gzip", "application/x-gzip"})

_DUCKDB_TYPES: dict[str, pa.DataType] = {
    **dict.fromkeys(("BIGINT", "INT8", "LONG"), pa.int64()),
    **dict.fromkeys(("INTEGER", "INT", "INT4", "INT32", "SIGNED"), pa.int32()),
    **dict.fromkeys(("SMALLINT", "INT2", "SHORT", "INT16"), pa.int16()),
    **dict.fromkeys(("TINYINT", "INT1"), pa.int8()),
    "UBIGINT": pa.uint64(),
    "UINTEGER": pa.uint32(),
    "USMALLINT": pa.uint16(),
    "UTINYINT": pa.uint8(),
    **dict.fromkeys(("DOUBLE", "FLOAT8"), pa.float64()),
    **dict.fromkeys(("FLOAT", "FLOAT4", "REAL"), pa.float32()),
    **dict.fromkeys(("VARCHAR", "TEXT", "CHAR", "BPCHAR", "STRING"), pa.string()),
    **dict.fromkeys(("BOOLEAN", "BOOL", "LOGICAL"), pa.bool_()),
    **dict.fromkeys(("BLOB", "BYTEA", "BINARY", "VARBINARY"), pa.binary()),
    "DATE": pa.date32(),
    "TIME": pa.time64("us"),
    **dict.fromkeys(("TIMESTAMP", "DATETIME"), pa.timestamp("us")),
    **dict.fromkeys(("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"), pa.timestamp("us", tz="UTC")),
}
_DECIMAL = re.compile(r"^(?:DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)$", re.IGNORECASE)
_ROW = re.compile(r" in row (\d+)$")
_JSONL_BLOCK = 1 << 20  # pyarrow's block; a body bigger is read in one block (see `_jsonl`)


def is_gzip(body: bytes, content_type: str | None) -> bool:
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    return body[:2] == GZIP_MAGIC or mime in GZIP_TYPES


def decode(body: bytes, content_type: str | None = None, max_bytes: int | None = None) -> bytes:
    """`body` as sent, or decompressed when it is a gzip file (by its type or its magic bytes).

    Raises SourceError on a gzip body that cannot be decoded, or decodes past `max_bytes`.
    """
    if not body or not is_gzip(body, content_type):
        return body
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as file:
            data = file.read() if max_bytes is None else file.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"the gzip body cannot be decoded: {exc}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise SourceError(
            f"the gzip body decodes past max_page_bytes ({max_bytes} bytes): raise"
            " source.max_page_bytes or ask the API for smaller pages"
        )
    return data


def arrow_type(name: str) -> pa.DataType:
    """A DuckDB or Arrow type name as an Arrow type; SourceError if neither knows it."""
    text = " ".join(name.split())
    known = _DUCKDB_TYPES.get(text.upper())
    if known is not None:
        return known
    decimal = _DECIMAL.match(text)
    if decimal is not None:
        return pa.decimal128(int(decimal.group(1)), int(decimal.group(2)))
    try:
        return pa.type_for_alias(text.lower())
    except ValueError:
        raise SourceError(
            f"source.columns: {name!r} is not a type name (DuckDB's, e.g. BIGINT, DOUBLE,"
            " VARCHAR, DATE, TIMESTAMP, DECIMAL(18,2), or Arrow's, e.g. int64, string)"
        ) from None


def to_table(body: bytes, fmt: Format, columns: Columns = None) -> pa.Table:
    """A decoded jsonl or csv body as one Arrow table; an empty body is a table of no rows.

    Raises SourceError naming the line where pyarrow (or the JSON check after it) says."""
    if not body.strip():
        return pa.table({})
    if fmt == "jsonl":
        return _jsonl(body)
    if fmt == "csv":
        return _csv(body, columns)
    raise ValueError(f"to_table reads jsonl or csv, not {fmt!r}")


def _jsonl(body: bytes) -> pa.Table:
    # one block when the body is bigger than pyarrow's: a row never straddles two blocks,
    # and the row pyarrow names in an error is counted from the body's start
    options = pa_json.ReadOptions(block_size=max(_JSONL_BLOCK, len(body) + 1))
    try:
        return pa_json.read_json(io.BytesIO(body), read_options=options)
    except pa.ArrowInvalid as exc:
        failure = exc
    # the error path, Python per line: name the line that is not a JSON object, or read a
    # body whose values Arrow cannot unify (a number here, text there) as JSON pages are
    # read (`records_to_arrow`: such a column becomes text)
    records: list[dict[str, Any]] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise SourceError(f"jsonl body: line {number} is not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            kind = type(record).__name__
            raise SourceError(f"jsonl body: line {number} is a JSON {kind}, not an object")
        records.append(record)
    if not records:  # pragma: no cover - pyarrow fails only on a line the loop fails on
        raise SourceError(f"jsonl body: {_message(failure)}")
    return records_to_arrow(records)


def _csv(body: bytes, columns: Columns) -> pa.Table:
    bad: list[str] = []

    def invalid(row: Any) -> str:
        where = f"line {row.number}" if row.number is not None else "a row"
        bad.append(f"{where} has {row.actual_columns} fields, the header {row.expected_columns}")
        return "error"

    convert = pa_csv.ConvertOptions()
    if isinstance(columns, Mapping):
        types = {name: arrow_type(kind) for name, kind in columns.items()}
        convert = pa_csv.ConvertOptions(column_types=types, include_columns=list(types))
    elif columns is not None:
        convert = pa_csv.ConvertOptions(include_columns=list(columns))
    parse = pa_csv.ParseOptions(invalid_row_handler=invalid)
    try:
        return pa_csv.read_csv(io.BytesIO(body), parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
        failure: Exception = exc
    if bad:  # read in threads, pyarrow does not know the row's line: read again on one
        bad.clear()
        one = pa_csv.ReadOptions(use_threads=False)
        try:
            pa_csv.read_csv(io.BytesIO(body), one, parse, convert)
        except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
            failure = exc
    detail = bad[0] if bad else _message(failure)
    raise SourceError(f"csv body: {detail}")


def _message(exc: Exception) -> str:
    """pyarrow's message, its 0-based `in row N` said as the line number it is."""
    text = str(exc).strip().strip('"')
    return _ROW.sub(lambda m: f" on line {int(m.group(1)) + 1}", text)


def scrub_table(table: pa.Table, secrets: tuple[str, ...]) -> pa.Table:
    """`table` with each secret value inside a string (a value, or a name, nested in structs
    and lists too) replaced by `***`, by `pyarrow.compute.replace_substring`."""
    live = tuple(secret for secret in secrets if len(secret) >= 4)  # as redaction.scrub
    if not live:
        return table
    names = [_scrub_text(name, live) for name in table.column_names]
    arrays = [_scrub_chunked(column, live) for column in table.columns]
    return pa.Table.from_arrays(arrays, names=names)


def _scrub_text(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def _scrub_chunked(column: pa.ChunkedArray, secrets: tuple[str, ...]) -> pa.ChunkedArray:
    if not _has_text(column.type):
        return column
    return pa.chunked_array([_scrub_array(chunk, secrets) for chunk in column.chunks])


def _has_text(kind: pa.DataType) -> bool:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return True
    if pa.types.is_struct(kind):
        return any(_has_text(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _has_text(kind.value_type)
    return False


def _scrub_array(array: pa.Array, secrets: tuple[str, ...]) -> pa.Array:
    kind = array.type
    if not _has_text(kind):
        return array
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        for secret in secrets:
            array = pc.replace_substring(array, secret, MASK)
        return array
    if pa.types.is_struct(kind):
        fields = [kind.field(i) for i in range(kind.num_fields)]
        children = [_scrub_array(array.field(i), secrets) for i in range(kind.num_fields)]
        renamed = [f.with_name(_scrub_text(f.name, secrets)) for f in fields]
        renamed = [f.with_type(c.type) for f, c in zip(renamed, children, strict=True)]
        return pa.StructArray.from_arrays(children, fields=renamed, mask=array.is_null())
    values = _scrub_array(array.values, secrets)
    cls = pa.LargeListArray if pa.types.is_large_list(kind) else pa.ListArray
    return cls.from_arrays(array.offsets, values, mask=array.is_null())
