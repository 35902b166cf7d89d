"""One cursor order (tg_actors/incremental.py) for the batch maximum, the run's cursor and the
store's forward-only write: numbers exactly, instants as instants, else text (issue 12 #3)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.kit.stepclock import T0, Clock
from tg_actors import incremental
from tg_actors.attempts import Commit
from tg_actors.engine.sync import batch_cursor
from tg_actors.incremental import cursor_key, cursor_order, newest, request_value
from tg_actors.store import progress
from tg_actors.store.duckdb import DuckStore

BIG = "1234567890123456789"  # 19 digits: two neighbours are one float
BIGGER = "1234567890123456790"


def column(values: list[str | None]) -> pa.Table:
    return pa.table({"c": pa.array(values, pa.string())})


# -- the defects, one by one -------------------------------------------------------------


def test_numeric_strings_in_a_batch_take_the_numeric_maximum() -> None:
    assert batch_cursor(column(["9", "10", "11"]), "c") == "11"  # was "9": text order
    assert batch_cursor(column(["9", None, "10"]), "c") == "10"


def test_19_digit_ids_order_exactly_everywhere() -> None:
    assert float(BIG) == float(BIGGER)  # what the old `newest` compared
    assert newest(BIGGER, BIG) == BIGGER and newest(BIG, BIGGER) == BIGGER
    assert batch_cursor(column([BIG, BIGGER, "99"]), "c") == BIGGER
    assert progress.behind(BIG, BIGGER) and not progress.behind(BIGGER, BIG)


def test_huge_integers_beyond_int64_and_the_str_digit_limit() -> None:
    huge = "9" * 5000  # past Python's 4300-digit int() limit
    assert newest(huge, "1" + "0" * 4999) == huge
    assert batch_cursor(column(["18446744073709551617", "18446744073709551616"]), "c") == (
        "18446744073709551617"
    )


def test_lookback_on_a_big_integer_cursor_is_exact() -> None:
    # was float arithmetic: 12345678901234567890 - 60 came out as ...567808
    assert request_value("12345678901234567890", None, timedelta(seconds=60)) == (
        "12345678901234567830"
    )
    assert request_value("1700000000.5", None, timedelta(seconds=1)) == "1699999999.5"
    assert request_value("100", None, timedelta(milliseconds=500)) == "99.5"


def test_mixed_offsets_in_a_batch_compare_as_instants() -> None:
    table = column(["2024-01-01T09:00:00+02:00", "2024-01-01T08:00:00Z", None])
    assert batch_cursor(table, "c") == "2024-01-01T08:00:00Z"
    # naive and offset text mixed: Arrow cannot cast them together, the one order still can
    table = column(["2024-01-01T09:00:00+02:00", "2024-01-01T07:30:00", "2024-01-01T06:00Z"])
    assert batch_cursor(table, "c") == "2024-01-01T07:30:00"


def test_typed_columns_use_the_same_order() -> None:
    assert batch_cursor(pa.table({"c": [9, 10, 11]}), "c") == "11"
    assert batch_cursor(pa.table({"c": [1.5, 2.25]}), "c") == "2.25"
    stamps = [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)]
    assert batch_cursor(pa.table({"c": stamps}), "c") == "2024-01-02T00:00:00Z"
    assert batch_cursor(pa.table({"c": pa.array([None], pa.string())}), "c") is None


def test_the_three_places_share_one_function() -> None:
    # sync.batch_cursor and store/progress.behind call tg_actors.incremental, nothing of their own
    import inspect

    from tg_actors.engine import sync

    assert "cursor_order" in inspect.getsource(progress.behind)
    assert "newest" in inspect.getsource(sync.batch_cursor)
    assert not hasattr(progress, "_number") and not hasattr(progress, "_timestamp")


def test_the_store_keeps_a_numeric_cursor_moving(tmp_path: Path) -> None:
    """The stuck cursor: 9 -> 10 must move (text order kept "9" and every run re-read)."""
    with DuckStore(tmp_path / "c.duckdb", clock=Clock()) as store:
        for minute, value in enumerate(["9", "10", "11", "10"]):
            run = store.create_run("ids", T0 + timedelta(minutes=minute), "manual")
            assert run is not None
            store.commit_run(Commit(run, table="t", write="append", pages=0, cursor=("ids", value)))
        assert store.cursor("ids") == "11"


# -- properties of the order -------------------------------------------------------------

OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
INSTANTS = st.builds(
    lambda moment, tz: moment.replace(tzinfo=UTC).astimezone(tz),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
    OFFSETS,
)
INT_TEXT = st.integers(-(10**30), 10**30).map(str)
DECIMAL_TEXT = st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str)
INSTANT_TEXT = INSTANTS.map(lambda m: m.isoformat())
CURSORS = st.one_of(INT_TEXT, DECIMAL_TEXT, INSTANT_TEXT, st.text(max_size=12))


def sign(x: int | Decimal | timedelta) -> int:
    zero = timedelta(0) if isinstance(x, timedelta) else 0
    return (x > zero) - (x < zero)  # type: ignore[operator]


@given(st.integers(-(10**40), 10**40), st.integers(-(10**40), 10**40))
def test_integers_compare_exactly(a: int, b: int) -> None:
    assert cursor_order(str(a), str(b)) == sign(a - b)


@given(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False),
)
def test_decimals_compare_exactly(a: Decimal, b: Decimal) -> None:
    assert cursor_order(str(a), str(b)) == sign(a - b)


@given(INSTANTS, INSTANTS)
def test_instants_compare_as_instants_whatever_their_offsets(a: datetime, b: datetime) -> None:
    assert cursor_order(a.isoformat(), b.isoformat()) == sign(a - b)
    z = a.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert cursor_order(z, a.isoformat()) == 0


@given(CURSORS, CURSORS, CURSORS)
def test_the_order_is_total_and_transitive(a: str, b: str, c: str) -> None:
    assert cursor_order(a, b) == -cursor_order(b, a)
    assert cursor_order(a, a) == 0
    ordered = sorted([a, b, c], key=cursor_key)
    for x, y in itertools.pairwise(ordered):
        assert cursor_order(x, y) <= 0
    assert cursor_order(ordered[0], ordered[2]) <= 0


@given(st.lists(CURSORS, min_size=1, max_size=8), st.randoms())
def test_newest_is_the_maximum_whatever_the_argument_order(values: list[str], rnd: object) -> None:
    best = newest(*values)
    if not any(values):  # "" is no cursor
        assert best is None
        return
    assert best is not None and all(cursor_order(best, v) >= 0 for v in values if v)
    shuffled = list(values)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert newest(*shuffled) == best


@given(CURSORS, CURSORS)
def test_behind_is_the_same_order(new: str, stored: str) -> None:
    assert progress.behind(new, stored) == (cursor_order(new, stored) < 0)


@settings(max_examples=60)
@given(
    st.one_of(
        st.lists(INT_TEXT, min_size=1, max_size=20),
        st.lists(INSTANT_TEXT, min_size=1, max_size=20),
        st.lists(INSTANTS.map(lambda m: m.astimezone(UTC).isoformat()), min_size=1, max_size=20),
        st.lists(CURSORS, min_size=1, max_size=20),
    )
)
def test_batch_cursor_agrees_with_newest(values: list[str]) -> None:
    found = batch_cursor(column(list(values)), "c")
    expected = newest(*values)
    if expected is None:
        assert found is None
    else:
        assert found is not None and cursor_order(found, expected) == 0


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("42", incremental.NUMBER),
        (" 42 ", incremental.NUMBER),
        ("-1.5e3", incremental.NUMBER),
        ("20240101", incremental.NUMBER),  # all digits: a number, though ISO could read it
        ("2024-01-01", incremental.INSTANT),
        ("2024-01-01T10:00:00Z", incremental.INSTANT),
        ("nan", incremental.TEXT),
        ("inf", incremental.TEXT),
        ("1_000", incremental.TEXT),
        ("abc", incremental.TEXT),
    ],
)
def test_kinds(value: str, kind: int) -> None:
    assert cursor_key(value)[0] == kind
