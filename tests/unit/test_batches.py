from __future__ import annotations

import pyarrow as pa
import pytest

from serve.demo import demo_orders
from tg_actors.errors import TransformError
from tg_actors.sources.batches import apply_transform, records_to_arrow


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
