"""Incremental cursors: which value to ask the API for, and which value to store next.

A cursor is kept as text in `tg.state`. Values compare as numbers when both are numeric, as
instants when both parse as ISO-8601 datetimes, else as text. The request asks for
`cursor - lookback` (exactly `initial` on the first run); the stored cursor is the maximum seen,
so with `lookback` and `merge` rows at the boundary are fetched again and merged, never lost.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any


def _as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _as_instant(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def sort_key(value: str) -> tuple[int, Any]:
    if (number := _as_number(value)) is not None:
        return (0, number)
    if (instant := _as_instant(value)) is not None:
        return (1, instant)
    return (2, value)


def newest(*values: str | None) -> str | None:
    """The greatest of the given cursor values (None when none is given)."""
    present = [v for v in values if v is not None and v != ""]
    if not present:
        return None
    kinds = {sort_key(v)[0] for v in present}
    if len(kinds) > 1:  # mixed kinds: fall back to text, the only common order
        return max(present)
    return max(present, key=sort_key)


def as_text(value: Any) -> str | None:
    """A cursor value read from a record as the text we store."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.isoformat().replace("+00:00", "Z")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def request_value(cursor: str | None, initial: str | None, lookback: timedelta) -> str | None:
    """The value to send in the incremental parameter: `initial` as written on the first run,
    then the stored cursor minus `lookback`."""
    if cursor in (None, ""):
        return initial
    value = cursor
    if not lookback:
        return value
    if (number := _as_number(value)) is not None:  # epoch seconds
        shifted = number - lookback.total_seconds()
        return str(int(shifted)) if shifted.is_integer() else str(shifted)
    if (instant := _as_instant(value)) is not None:
        shifted_at = instant - lookback
        text = shifted_at.isoformat()
        return text.replace("+00:00", "Z") if value.endswith("Z") else text
    return value
