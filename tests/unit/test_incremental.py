from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tg_actors.incremental import as_text, newest, request_value


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            ["2024-01-02T00:00:00Z", "2024-01-10T00:00:00Z", "2024-01-03T00:00:00Z"],
            "2024-01-10T00:00:00Z",
        ),
        # instants, not text: 09:00+02:00 is 07:00Z, earlier than 08:00Z
        (["2024-01-01T09:00:00+02:00", "2024-01-01T08:00:00Z"], "2024-01-01T08:00:00Z"),
        (["9", "10", "100"], "100"),  # numbers, not text
        ([None, "5", None], "5"),
        ([None, None], None),
        (["b", "a"], "b"),
    ],
)
def test_newest(values: list[str | None], expected: str | None) -> None:
    assert newest(*values) == expected


@pytest.mark.parametrize(
    ("cursor", "initial", "lookback", "expected"),
    [
        (None, "2024-01-01T00:00:00Z", timedelta(0), "2024-01-01T00:00:00Z"),
        (
            "2024-01-10T00:00:00Z",
            "2024-01-01T00:00:00Z",
            timedelta(hours=1),
            "2024-01-09T23:00:00Z",
        ),
        ("2024-01-10T00:00:00+02:00", None, timedelta(minutes=30), "2024-01-09T23:30:00+02:00"),
        ("1700000000", None, timedelta(seconds=60), "1699999940"),
        (None, None, timedelta(hours=1), None),
        (None, "2024-01-01T00:00:00Z", timedelta(hours=1), "2024-01-01T00:00:00Z"),
        ("opaque-token", None, timedelta(hours=1), "opaque-token"),
    ],
)
def test_request_value(
    cursor: str | None, initial: str | None, lookback: timedelta, expected: str | None
) -> None:
    assert request_value(cursor, initial, lookback) == expected


def test_as_text() -> None:
    assert as_text(datetime(2024, 1, 1, tzinfo=UTC)) == "2024-01-01T00:00:00Z"
    assert as_text(datetime(2024, 1, 1)) == "2024-01-01T00:00:00Z"
    assert as_text(5.0) == "5" and as_text(5.5) == "5.5" and as_text(None) is None
