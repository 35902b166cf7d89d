"""source.format (sources/formats.py), pure: JSON lines and CSV bodies into Arrow with their
types, `columns` given, gzip decoded by its type and by its magic bytes, an empty body, and
a malformed line named; and the jsonl/csv rules of the job file (`source.records`)."""

from __future__ import annotations

import gzip
from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa
import pytest
from pydantic import ValidationError

from tg_actors.errors import SourceError
from tg_actors.jobs import HttpSource
from tg_actors.sources.formats import arrow_type, decode, scrub_table, to_table
from tg_actors.sources.paginator_base import TableRows, _records_digest

JSONL = b'{"id": 1, "name": "ann", "at": "2024-01-01T00:00:00", "tags": ["a"]}\n\n' + (
    b'{"id": 2, "name": "bob", "at": "2024-01-02T00:00:00", "tags": []}\n'
)
CSV = b"id,name,amount,day\n1,ann,1.5,2024-01-01\n2,bob,,2024-01-02\n"


def test_jsonl_becomes_arrow_with_inferred_types() -> None:
    table = to_table(JSONL, "jsonl")
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("name").type == pa.string()
    assert table.schema.field("tags").type == pa.list_(pa.string())
    assert table.column("at").to_pylist() == [datetime(2024, 1, 1), datetime(2024, 1, 2)]
    assert table.column("name").to_pylist() == ["ann", "bob"]


def test_jsonl_values_arrow_cannot_unify_become_text_as_json_pages_do() -> None:
    table = to_table(b'{"a": 1}\n{"a": "x"}\n', "jsonl")
    assert table.to_pylist() == [{"a": "1"}, {"a": "x"}]


def test_csv_types_are_inferred() -> None:
    table = to_table(CSV, "csv")
    assert [f.type for f in table.schema] == [pa.int64(), pa.string(), pa.float64(), pa.date32()]
    assert table.to_pylist()[1] == {"id": 2, "name": "bob", "amount": None, "day": date(2024, 1, 2)}


def test_csv_columns_given_as_types_or_names() -> None:
    typed = to_table(CSV, "csv", {"day": "VARCHAR", "amount": "DECIMAL(10,2)", "id": "int32"})
    assert typed.column_names == ["day", "amount", "id"]
    assert [f.type for f in typed.schema] == [pa.string(), pa.decimal128(10, 2), pa.int32()]
    assert typed.column("amount").to_pylist() == [Decimal("1.50"), None]
    assert to_table(CSV, "csv", ["name", "id"]).to_pylist()[0] == {"name": "ann", "id": 1}
    assert arrow_type("timestamp with time zone") == pa.timestamp("us", tz="UTC")
    assert arrow_type("timestamp[ms]") == pa.timestamp("ms")
    with pytest.raises(SourceError, match="'nonsense' is not a type name"):
        to_table(CSV, "csv", {"id": "nonsense"})
    with pytest.raises(SourceError, match="'zz'"):
        to_table(CSV, "csv", ["zz"])


@pytest.mark.parametrize("kind", ["application/gzip", "application/x-gzip; charset=binary"])
def test_gzip_is_decoded_by_its_content_type(kind: str) -> None:
    assert decode(gzip.compress(CSV), kind) == CSV


def test_gzip_is_decoded_by_its_magic_bytes_and_plain_bodies_pass() -> None:
    assert decode(gzip.compress(JSONL), "application/octet-stream") == JSONL
    assert decode(gzip.compress(JSONL) + gzip.compress(b"more"), None) == JSONL + b"more"
    assert decode(CSV, "text/csv") is CSV
    with pytest.raises(SourceError, match="past max_page_bytes"):
        decode(gzip.compress(b"x" * 10_000), None, max_bytes=1000)
    with pytest.raises(SourceError, match="gzip body cannot be decoded"):
        decode(b"\x1f\x8bnot gzip at all", None)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_empty_body_is_a_page_of_no_records(fmt: str) -> None:
    assert to_table(b"", fmt).num_rows == 0  # type: ignore[arg-type]
    assert to_table(b" \n", fmt).num_rows == 0  # type: ignore[arg-type]


def test_a_malformed_line_is_named() -> None:
    with pytest.raises(SourceError, match="jsonl body: line 3 is not JSON"):
        to_table(b'{"a": 1}\n{"a": 2}\n{"a": \n{"a": 4}\n', "jsonl")
    with pytest.raises(SourceError, match="line 2 is a JSON list, not an object"):
        to_table(b'{"a": 1}\n[1, 2]\n', "jsonl")
    with pytest.raises(SourceError, match="csv body: line 3 has 1 fields, the header 2"):
        to_table(b"a,b\n1,2\n3\n4,5\n", "csv")
    with pytest.raises(SourceError, match="invalid value 'x'"):
        to_table(b"a,b\n1,2\nx,3\n", "csv", {"a": "BIGINT", "b": "BIGINT"})


def test_secrets_are_scrubbed_from_text_nested_too() -> None:
    table = to_table(
        b'{"k": "tok-SECRET9", "n": {"s": "SECRET9"}, "l": ["xSECRET9"], "i": 1}\n', "jsonl"
    )
    assert scrub_table(table, ("SECRET9",)).to_pylist() == [
        {"k": "tok-***", "n": {"s": "***"}, "l": ["x***"], "i": 1}
    ]


def test_table_rows_give_paginators_a_length_and_the_loop_guard_a_digest() -> None:
    table = to_table(CSV, "csv")
    rows = TableRows(table, CSV)
    assert len(rows) == 2 and rows and rows[-1]["name"] == "bob"
    assert _records_digest(rows) == _records_digest(TableRows(table, CSV))
    assert _records_digest(rows) != _records_digest(TableRows(table, CSV + b"3,cy,,\n"))


def test_records_is_a_json_path_for_json_only() -> None:
    url = "https://api.example.com/export"
    assert HttpSource.model_validate({"url": url, "format": "csv", "columns": ["id"]})
    with pytest.raises(ValidationError, match="records") as info:
        HttpSource.model_validate({"url": url, "format": "jsonl", "records": "$.data"})
    assert info.value.errors()[0]["loc"] == ("records",)
    with pytest.raises(ValidationError, match="columns"):
        HttpSource.model_validate({"url": url, "format": "jsonl", "columns": ["id"]})
