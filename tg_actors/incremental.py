"""Incremental cursors: which value to ask the API for, and which value to store next.

A cursor is kept as text in `tg.state`. `cursor_key` / `cursor_order` are THE cursor order,
used for a batch's maximum (sync.batch_cursor), the run's running maximum (`newest`) and the
store's forward-only write (store/progress.behind):

- numbers: integer text (any length: 19+ digit ids included) compares exactly as integers,
  decimal text exactly as `Decimal`; never through float;
- instants: ISO-8601 text (`datetime.fromisoformat`; no offset counts as UTC) compares as
  instants, so mixed offsets order correctly;
- anything else is text.

A value is a number first (so `20240101` is a number), then an instant, then text. Values of
different kinds order by kind: numbers < instants < text (a total order, so the maximum of
any mix does not depend on the order the values came in). Pure: no I/O, no clock.

The request asks for `cursor - lookback` (exactly `initial` on the first run); the stored
cursor is the maximum seen, so with `lookback` and `merge` rows at the boundary are fetched
again and merged, never lost.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

NUMBER, INSTANT, TEXT = 0, 1, 2
# ASCII only: int()/Decimal() also take "1_000", " ３" and "NaN", which are not cursors we order
INTEGER_PATTERN = r"[+-]?[0-9]+"
DECIMAL_PATTERN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_INTEGER = re.compile(INTEGER_PATTERN)
_DECIMAL = re.compile(DECIMAL_PATTERN)
_INT_DIGITS = 4000  # int() refuses longer text (sys.int_info.default_max_str_digits)


def _as_number(value: str) -> int | Decimal | None:
    text = value.strip()
    if _INTEGER.fullmatch(text):
        return int(text) if len(text) <= _INT_DIGITS else Decimal(text)
    if _DECIMAL.fullmatch(text):
        return Decimal(text)  # exact: Decimal(str) never rounds, comparisons never round
    return None


def _as_instant(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, TypeError, OverflowError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _kind(value: str) -> tuple[int, Any]:
    if (number := _as_number(value)) is not None:
        return (NUMBER, number)
    if (instant := _as_instant(value)) is not None:
        return (INSTANT, instant)
    return (TEXT, value)


def cursor_key(value: str) -> tuple[int, Any, str]:
    """Sort key of the cursor order: (kind, value in that kind, the text). The text breaks
    ties between equal values written differently ("1.0" and "1", one instant in two
    offsets), so sorting and `newest` never depend on the input order."""
    kind, parsed = _kind(value)
    return (kind, parsed, value)


def cursor_order(a: str, b: str) -> int:
    """-1, 0 or 1 as cursor `a` is before, equal to or after `b` (equal: the same number or
    instant, however written)."""
    ka, kb = _kind(a), _kind(b)
    return (ka > kb) - (ka < kb)


def newest(*values: str | None) -> str | None:
    """The greatest of the given cursor values (None and "" ignored; None when none is left)."""
    present = [v for v in values if v is not None and v != ""]
    if not present:
        return None
    return max(present, key=cursor_key)


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
    then the stored cursor minus `lookback` (exact for numbers: epoch seconds or ids)."""
    if cursor in (None, ""):
        return initial
    value = cursor
    if not lookback:
        return value
    number = _as_number(value)
    if number is not None:  # epoch seconds
        seconds = Decimal(lookback.days * 86400 + lookback.seconds)
        seconds += Decimal(lookback.microseconds) / Decimal(1_000_000)
        if isinstance(number, int) and seconds == seconds.to_integral_value():
            return str(number - int(seconds))
        with localcontext() as exact:  # enough digits that nothing here rounds
            exact.prec = len(value) + 40
            shifted = Decimal(number) - seconds
            if shifted == shifted.to_integral_value():
                return format(shifted.to_integral_value(), "f")
            return format(shifted.normalize(), "f")
    if (instant := _as_instant(value)) is not None:
        shifted_at = instant - lookback
        text = shifted_at.isoformat()
        return text.replace("+00:00", "Z") if value.endswith("Z") else text
    return value
