from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.app import demo_orders
from tg_actors.errors import TransformError
from tg_actors.sources.batches import records_to_arrow
from tg_actors.transform import apply_transform


def all_types(schema: pa.Schema) -> list[pa.DataType]:
    out: list[pa.DataType] = []

    def walk(t: pa.DataType) -> None:
        out.append(t)
        for i in range(t.num_fields):
            walk(t.field(i).type)

    for f in schema:
        walk(f.type)
    return out


def test_columns_from_every_record_in_first_seen_order() -> None:
    table = records_to_arrow([{"a": 1}, {"b": "x", "a": 2}, {"c": True}])
    assert table.column_names == ["a", "b", "c"]
    assert table.to_pylist() == [
        {"a": 1, "b": None, "c": None},
        {"a": 2, "b": "x", "c": None},
        {"a": None, "b": None, "c": True},
    ]


def test_inferred_types() -> None:
    table = records_to_arrow(
        [
            {"n": 1, "x": 1, "s": "a", "o": {"k": 1}, "l": [1], "z": None},
            {"n": 2, "x": 2.5, "s": None, "o": {"k": 2, "j": "y"}, "l": [], "z": None},
        ]
    )
    types = {f.name: f.type for f in table.schema}
    assert types["n"] == pa.int64()
    assert types["x"] == pa.float64()  # int mixed with float
    assert types["s"] == pa.string()
    assert types["o"] == pa.struct([("k", pa.int64()), ("j", pa.string())])
    assert types["l"] == pa.list_(pa.int64())
    assert types["z"] == pa.null()  # all null stays null


def test_values_arrow_cannot_unify_become_text() -> None:
    table = records_to_arrow([{"v": 1}, {"v": "x"}, {"v": {"a": [1]}}, {"v": None}, {"v": 2**70}])
    assert table.schema.field("v").type == pa.string()
    assert table.column("v").to_pylist() == ["1", "x", '{"a":[1]}', None, str(2**70)]


def test_no_records_no_columns() -> None:
    table = records_to_arrow([])
    assert (table.num_rows, table.num_columns) == (0, 0)
    assert apply_transform(table, "SELECT id FROM records").num_rows == 0


def test_only_empty_records_no_columns() -> None:
    assert records_to_arrow([{}, {}]).num_columns == 0


@pytest.mark.parametrize(
    ("records", "names"),
    [
        # the first record has every key (the fast path): later ones may lack some
        ([{"b": 1, "a": 2}, {"a": 3}, {}], ["b", "a"]),
        # a key only in a later record, and one record with the keys in another order
        ([{"a": 1}, {}, {"c": 2, "b": 3}, {"b": 4, "a": 5}], ["a", "c", "b"]),
        # as many keys as the first record, but not the same ones
        ([{"a": 1, "b": 2}, {"c": 3}], ["a", "b", "c"]),
    ],
)
def test_first_seen_order_and_missing_keys(records: list[dict[str, Any]], names: list[str]) -> None:
    table = records_to_arrow(records)
    assert table.column_names == names
    assert table.to_pylist() == [{n: r.get(n) for n in names} for r in records]


def reference(records: list[dict[str, Any]]) -> pa.Table:
    """The row-by-row implementation records_to_arrow replaced: the semantics to keep."""

    def column(values: list[Any]) -> pa.Array:
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return pa.array([text(v) for v in values], type=pa.string())
        return array.cast(pa.string()) if pa.types.is_string_view(array.type) else array

    def text(value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)

    names = list(dict.fromkeys(key for record in records for key in record))
    return pa.table({name: column([r.get(name) for r in records]) for name in names})


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xyz"), inner),
    max_leaves=6,
)
keys = st.sampled_from(["id", "name", "n", "o", "l", "z"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(keys, json_values, max_size=6), max_size=8))
def test_same_table_as_the_row_by_row_reference(records: list[dict[str, Any]]) -> None:
    got, want = records_to_arrow(records), reference(records)
    assert got.schema == want.schema
    assert got.equals(want)


def test_demo_orders_and_the_example_transform() -> None:
    orders = demo_orders(200)
    table = records_to_arrow(orders)
    assert table.schema.field("shipping").type == pa.struct(
        [("city", pa.string()), ("country", pa.string())]
    )
    assert table.schema.field("tags").type == pa.list_(pa.string())
    assert not any(pa.types.is_string_view(t) for t in all_types(table.schema))

    sql = "SELECT id, lower(email) AS email, amount, shipping.city AS city FROM records WHERE amount > 0"
    out = apply_transform(table, sql)
    assert isinstance(out, pa.Table)
    assert out.column_names == ["id", "email", "amount", "city"]
    assert out.num_rows == sum(1 for o in orders if o["amount"] > 0)
    assert all(e == e.lower() for e in out.column("email").to_pylist())
    assert not any(pa.types.is_string_view(t) for t in all_types(out.schema))


def test_transform_keeps_nested_types() -> None:
    table = records_to_arrow(demo_orders(5))
    out = apply_transform(table, "SELECT shipping, tags FROM records")
    assert out.schema.field("shipping").type == table.schema.field("shipping").type
    assert out.to_pylist() == table.select(["shipping", "tags"]).to_pylist()


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT nope FROM records", 'Referenced column "nope" not found'),
        ("SELEC 1", "syntax error"),
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
        ("SET enable_external_access = true", "Cannot change configuration"),
    ],
)
def test_transform_errors_carry_duckdbs_message(sql: str, message: str) -> None:
    with pytest.raises(TransformError, match="transform.sql failed: .*" + message):
        apply_transform(records_to_arrow([{"id": 1}]), sql)
