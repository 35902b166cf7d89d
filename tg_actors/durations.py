"""Durations as users write them (`30s`, `5m`, `2h`, `1d`, `1h30m`) <-> timedelta. ISO 8601
durations (`PT30M`, `P1DT2H`, what JSON Schema tools and other systems write) are read too;
weeks, months and years are not (a month has no fixed length)."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ISO = re.compile(
    r"P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse `30s`, `1h30m`, `250ms`; a bare number is seconds. Raises ValueError."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration must be like 30s, 5m, 2h or 1d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    text = value.strip().replace(" ", "")
    if not text:
        raise ValueError("a duration must be like 30s, 5m, 2h or 1d")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return timedelta(seconds=float(text))
    iso = _ISO.fullmatch(text)
    if iso is not None and text.upper() not in ("P", "PT") and not text.upper().endswith("T"):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v is not None}
        return timedelta(
            days=parts.get("d", 0),
            hours=parts.get("h", 0),
            minutes=parts.get("m", 0),
            seconds=parts.get("s", 0),
        )
    pos, seconds = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"invalid duration {value!r}: use a number with s, m, h or d (e.g. 30s)")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Shortest form that parse_duration reads back to the same value."""
    whole, micro = delta.days * 86400 + delta.seconds, delta.microseconds
    if whole == 0 and micro == 0:
        return "0s"
    if micro:  # exact to the microsecond, never an exponent (`3.7e+07s` would not parse)
        if whole == 0 and micro % 1000 == 0:
            return f"{micro // 1000}ms"
        return f"{whole}.{micro:06d}".rstrip("0") + "s"
    seconds = whole
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
