"""Dependent endpoints and time windows (`source.for_each`, `source.window`): the pure part.

A job with `for_each` reads one request chain per row (a customer's orders under
`/customers/{customer_id}/orders`); a job with `window` walks time slices (`created_gte=
{window_start}&created_lt={window_end}`); with both, each row walks its windows. Here:

- placeholders: `{name}` in `url`, `params`, `headers` and `body`, filled per row and window
  (`fill_source`); `{{` and `}}` write a literal brace. Only jobs with `for_each` or `window`
  have placeholders: elsewhere braces are text, as they always were;
- windows: the slices from a position to an end (`slices`), and their text (`window_text`);
- chain keys: a row's identity, its values as canonical JSON (`chain_key`): its cursor and
  window position are kept under it in `tg.state.positions`, so rows never share a cursor;
- positions: `{key: {"cursor", "window"}}` (window: where the next window starts), merged
  forward-only into the stored ones at commit (`merge_positions`);
- `ChainBook`: where each chain of an attempt stands; its snapshot is the checkpoint a retried
  attempt resumes from (done rows skipped, a half-done row continued after its last page).

No I/O, no clock: the engine (engine/fanout.py) and the store call these.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from tg_actors.incremental import newest

PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
WINDOW_NAMES = ("window_start", "window_end")
WINDOW_FORMATS = ("iso", "date", "epoch", "epoch_ms")
Scalar = str | int | float | bool | None


# -- placeholders ---------------------------------------------------------------------------


def placeholders(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, name) of every `{name}` in the strings of `value`, at any depth."""
    if isinstance(value, str):
        for match in PLACEHOLDER.finditer(value):
            if match.group(1):
                yield path, match.group(1)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from placeholders(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from placeholders(item, (*path, i))


def source_placeholders(source: Mapping[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(field path under `source`, name) of the placeholders a request takes."""
    yield from placeholders(source.get("url", ""), ("url",))
    for field in ("params", "headers"):
        yield from placeholders(source.get(field) or {}, (field,))
    yield from placeholders(source.get("body"), ("body",))


def fill(value: Any, values: Mapping[str, Scalar], *, encode: bool = False) -> Any:
    """`value` with each `{name}` replaced by values[name]. A string that is exactly one
    placeholder becomes the value itself (a number stays a number in a JSON body), unless
    `encode` (a URL: each value percent-encoded, `/` included). KeyError names a missing one."""
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole and whole.group(1) and not encode:
            return values[whole.group(1)]

        def one(match: re.Match[str]) -> str:
            token = match.group(0)
            if token in ("{{", "}}"):
                return token[0]
            text = _text(values[match.group(1)])
            return quote(text, safe="") if encode else text

        return PLACEHOLDER.sub(one, value)
    if isinstance(value, Mapping):
        return {key: fill(item, values, encode=encode) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, values, encode=encode) for item in value]
    return value


def fill_source(source: Mapping[str, Any], values: Mapping[str, Scalar]) -> dict[str, Any]:
    """A stored `source` (HttpSource.model_dump) with the request's placeholders filled:
    `url` percent-encoded, `params` and `headers` as text or their own type, `body` deep."""
    out = dict(source)
    out["url"] = fill(source["url"], values, encode=True)
    out["params"] = fill(source.get("params") or {}, values)
    out["headers"] = {k: _text(v) for k, v in fill(source.get("headers") or {}, values).items()}
    if source.get("body") is not None:
        out["body"] = fill(source["body"], values)
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def row_values(row: Mapping[str, Any], where: str) -> dict[str, Scalar]:
    """A for_each row as placeholder values: scalars only (dates and instants as ISO text,
    decimals as text); ValueError naming the column otherwise. A value holding `${` is
    refused: data must never turn into a secret reference."""
    out: dict[str, Scalar] = {}
    for name, value in row.items():
        if isinstance(value, datetime):
            value = as_iso(value)
        elif isinstance(value, date):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = str(value)
        elif not isinstance(value, str | int | float | bool) and value is not None:
            raise ValueError(f"{where}: column {name!r} holds {type(value).__name__}, not a scalar")
        if isinstance(value, str) and "${" in value:
            raise ValueError(f"{where}: column {name!r} holds '${{': not allowed in a request")
        out[str(name)] = value
    return out


def chain_key(row: Mapping[str, Scalar]) -> str:
    """The row's identity: its values as canonical JSON (sorted keys); "" for no row."""
    if not row:
        return ""
    return json.dumps(dict(row), sort_keys=True, separators=(",", ":"), default=str)


# -- windows --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slice:
    start: datetime
    end: datetime


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def as_iso(moment: datetime) -> str:
    return aware(moment).astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_instant(text: str) -> datetime:
    """ISO 8601 text (a date alone is its midnight UTC) as an aware datetime; ValueError."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return aware(moment)


def slices(since: datetime, until: datetime, step: timedelta) -> Iterator[Slice]:
    """[since, since+step), ... up to `until`; the last one is clamped at `until`."""
    if step <= timedelta(0):
        raise ValueError("a window step must be more than 0")
    start = aware(since)
    end = aware(until)
    while start < end:
        stop = min(start + step, end)
        yield Slice(start, stop)
        start = stop


def window_text(moment: datetime, fmt: str) -> Scalar:
    """A window bound as the API wants it: iso (2024-01-01T00:00:00Z), date (2024-01-01),
    epoch (seconds) or epoch_ms."""
    moment = aware(moment).astimezone(UTC)
    if fmt == "iso":
        return as_iso(moment)
    if fmt == "date":
        return moment.date().isoformat()
    if fmt == "epoch":
        return int(moment.timestamp())
    if fmt == "epoch_ms":
        return int(moment.timestamp() * 1000)
    raise ValueError(f"unknown window format {fmt!r}; one of {', '.join(WINDOW_FORMATS)}")


def window_values(piece: Slice, fmt: str) -> dict[str, Scalar]:
    return {
        "window_start": window_text(piece.start, fmt),
        "window_end": window_text(piece.end, fmt),
    }


# -- positions ------------------------------------------------------------------------------


def merge_positions(
    stored: Mapping[str, Mapping[str, Any]] | None, new: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """`new` folded into `stored`, per key and field forward-only: a cursor by the cursor
    order (incremental.newest), a window position by time. Keys not in `new` stay."""
    out = {key: dict(value) for key, value in (stored or {}).items()}
    for key, value in new.items():
        have = out.setdefault(key, {})
        cursor = newest(have.get("cursor"), value.get("cursor"))
        if cursor is not None:
            have["cursor"] = cursor
        windows = [w for w in (have.get("window"), value.get("window")) if w]
        if windows:
            have["window"] = max(windows, key=parse_instant)
    return out


# -- an attempt's chains --------------------------------------------------------------------


@dataclass
class ChainState:
    """Where one chain stands: its cursor (the newest seen), `window` (where its next window
    starts; None without windows) and `source` (the page checkpoint inside that window,
    None: from its first page)."""

    cursor: str | None = None
    window: str | None = None
    source: dict[str, Any] | None = None

    def to_json(self, *, with_source: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"cursor": self.cursor, "window": self.window}
        if with_source:
            out["source"] = self.source
        return out


class ChainBook:
    """The chains of one attempt: finished (`done`, append-only) and open ones. `snapshot()`
    is cheap to take after every page: finished chains are kept as a count into the append-only
    list, materialised only when a checkpoint is written."""

    VERSION = 1

    def __init__(self, saved: Mapping[str, Any] | None = None) -> None:
        self._done: list[tuple[str, ChainState]] = []
        self._done_keys: set[str] = set()
        self.open: dict[str, ChainState] = {}
        if saved:
            if saved.get("version") != self.VERSION:
                raise ValueError("cannot resume: the chain checkpoint is of another version")
            for key, value in (saved.get("done") or {}).items():
                self.finish(key, ChainState(value.get("cursor"), value.get("window")))
            for key, value in (saved.get("open") or {}).items():
                self.open[key] = ChainState(
                    value.get("cursor"), value.get("window"), value.get("source")
                )

    def is_done(self, key: str) -> bool:
        return key in self._done_keys

    def state(self, key: str) -> ChainState | None:
        """The open chain's state from the checkpoint, or None."""
        return self.open.get(key)

    def page(self, key: str, state: ChainState) -> None:
        self.open[key] = state

    def finish(self, key: str, state: ChainState) -> None:
        self.open.pop(key, None)
        if key not in self._done_keys:
            self._done_keys.add(key)
            self._done.append((key, ChainState(state.cursor, state.window)))

    def snapshot(self) -> Snapshot:
        return Snapshot(
            self, len(self._done), {k: ChainState(**vars(v)) for k, v in self.open.items()}
        )

    def positions(self) -> dict[str, dict[str, Any]]:
        """{key: {cursor, window}} of every chain this run read (finished or not), for the
        commit; empty fields left out."""
        out: dict[str, dict[str, Any]] = {}
        for key, state in [*self._done, *self.open.items()]:
            value = {k: v for k, v in state.to_json(with_source=False).items() if v is not None}
            out[key] = value
        return out

    def _done_part(self, count: int) -> dict[str, dict[str, Any]]:
        return {k: s.to_json(with_source=False) for k, s in self._done[:count]}


@dataclass(frozen=True)
class Snapshot:
    """A ChainBook as it was after one page; `__call__` gives the checkpoint's JSON."""

    book: ChainBook
    done: int
    open: dict[str, ChainState]

    def __call__(self) -> dict[str, Any]:
        return {
            "version": ChainBook.VERSION,
            "done": self.book._done_part(self.done),
            "open": {k: s.to_json() for k, s in self.open.items()},
        }
