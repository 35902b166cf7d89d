"""The pure part of dependent endpoints and windows (tg_actors/chains.py): placeholders,
windows, chain keys, positions merged forward-only, and the ChainBook's checkpoints."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from tg_actors.chains import (
    ChainBook,
    ChainState,
    chain_key,
    fill,
    fill_source,
    merge_positions,
    placeholders,
    row_values,
    slices,
    source_placeholders,
    window_text,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_placeholders_are_found_at_any_depth_with_their_path() -> None:
    body = {"q": "{a} and {{literal}}", "list": [1, "{b}"], "n": {"deep": "{c}"}}
    assert list(placeholders(body)) == [(("q",), "a"), (("list", 1), "b"), (("n", "deep"), "c")]


def test_source_placeholders_name_the_request_fields() -> None:
    source = {
        "url": "http://x/c/{customer_id}/o",
        "params": {"gte": "{window_start}", "fixed": 3},
        "headers": {"X-Tenant": "{tenant}"},
        "body": {"after": "{cursor_value}"},
        "records": "$.{not_a_request_field}",
    }
    assert list(source_placeholders(source)) == [
        (("url",), "customer_id"),
        (("params", "gte"), "window_start"),
        (("headers", "X-Tenant"), "tenant"),
        (("body", "after"), "cursor_value"),
    ]


def test_fill_keeps_a_whole_placeholder_typed_and_interpolates_the_rest() -> None:
    values = {"id": 7, "name": "a b", "flag": True}
    assert fill("{id}", values) == 7
    assert fill("id={id}, {{id}}", values) == "id=7, {id}"
    assert fill({"x": ["{flag}", "{name}!"]}, values) == {"x": [True, "a b!"]}
    with pytest.raises(KeyError):
        fill("{missing}", values)


def test_fill_source_encodes_the_url_and_leaves_params_to_the_client() -> None:
    source = {
        "url": "http://x/c/{name}/orders?tag={name}",
        "params": {"q": "{name}", "n": "{id}"},
        "headers": {"X-Id": "{id}"},
        "body": None,
    }
    filled = fill_source(source, {"name": "a/b c&d", "id": 7})
    assert filled["url"] == "http://x/c/a%2Fb%20c%26d/orders?tag=a%2Fb%20c%26d"
    assert filled["params"] == {"q": "a/b c&d", "n": 7}
    assert filled["headers"] == {"X-Id": "7"}  # headers are text
    assert source["url"].endswith("{name}")  # the stored source is left as it was


def test_row_values_are_scalars_and_never_secret_references() -> None:
    row = {"d": date(2024, 1, 2), "t": datetime(2024, 1, 2, 3, 4, tzinfo=UTC), "m": Decimal("1.5")}
    assert row_values(row, "row") == {"d": "2024-01-02", "t": "2024-01-02T03:04:00Z", "m": "1.5"}
    with pytest.raises(ValueError, match="column 'x' holds list"):
        row_values({"x": [1]}, "row")
    with pytest.raises(ValueError, match=r"column 'x' holds '\$\{'"):
        row_values({"x": "${TG_API_TOKEN}"}, "row")


def test_chain_keys_are_canonical_and_distinct() -> None:
    assert chain_key({"b": 1, "a": "x"}) == chain_key({"a": "x", "b": 1}) == '{"a":"x","b":1}'
    assert chain_key({"id": 1}) != chain_key({"id": "1"})
    assert chain_key({}) == ""


def test_slices_cover_the_range_and_clamp_the_last() -> None:
    got = list(slices(T0, T0 + timedelta(days=2, hours=12), timedelta(days=1)))
    assert [(s.start, s.end) for s in got] == [
        (T0, T0 + timedelta(days=1)),
        (T0 + timedelta(days=1), T0 + timedelta(days=2)),
        (T0 + timedelta(days=2), T0 + timedelta(days=2, hours=12)),
    ]
    assert list(slices(T0, T0, timedelta(days=1))) == []
    with pytest.raises(ValueError):
        list(slices(T0, T0 + timedelta(days=1), timedelta(0)))


@pytest.mark.parametrize(
    ("fmt", "text"),
    [("iso", "2024-01-01T06:00:00Z"), ("date", "2024-01-01"), ("epoch", 1704088800),
     ("epoch_ms", 1704088800000)],
)  # fmt: skip
def test_window_text(fmt: str, text: object) -> None:
    assert window_text(T0 + timedelta(hours=6), fmt) == text


def test_positions_merge_forward_only_per_chain_and_field() -> None:
    stored = {
        "a": {"cursor": "2024-03-01T00:00:00Z", "window": "2024-03-01T00:00:00Z"},
        "b": {"cursor": "10"},
    }
    new = {
        "a": {"cursor": "2024-02-01T00:00:00Z", "window": "2024-04-01T00:00:00Z"},
        "b": {"cursor": "9"},
        "c": {"cursor": "1"},
    }
    assert merge_positions(stored, new) == {
        "a": {"cursor": "2024-03-01T00:00:00Z", "window": "2024-04-01T00:00:00Z"},
        "b": {"cursor": "10"},
        "c": {"cursor": "1"},
    }


def test_a_book_snapshot_is_its_state_then_and_round_trips() -> None:
    book = ChainBook()
    book.finish("r1", ChainState("5", None))
    book.page("r2", ChainState("3", None, {"page": 2}))
    snapshot = book.snapshot()
    book.finish("r2", ChainState("4", None))
    book.page("r3", ChainState(None, None, {"page": 1}))
    saved = json.loads(json.dumps(snapshot()))  # as the store keeps it
    assert saved == {
        "version": 1,
        "done": {"r1": {"cursor": "5", "window": None}},
        "open": {"r2": {"cursor": "3", "window": None, "source": {"page": 2}}},
    }
    again = ChainBook(saved)
    assert again.is_done("r1") and not again.is_done("r2")
    assert again.state("r2") == ChainState("3", None, {"page": 2})
    assert again.positions() == {"r1": {"cursor": "5"}, "r2": {"cursor": "3"}}
    with pytest.raises(ValueError, match="another version"):
        ChainBook({**saved, "version": 99})
