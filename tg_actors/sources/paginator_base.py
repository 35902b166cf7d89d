"""Paginator: the interface every paginator implements, and the base class with loop guards
and checkpoints (`snapshot` / `restore`) that the ones in `sources.pagination` build on."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson

from tg_actors.errors import PaginationLoop, SourceError
from tg_actors.redaction import sanitize_url
from tg_actors.sources.requestspec import RequestSpec, ResponseView, full_url

# a page's records as paginators see them: a list, or the `TableRows` of a jsonl/csv page
Records = Sequence[dict[str, Any]]
Next = RequestSpec | None  # None: no more pages


class Paginator(Protocol):
    type: ClassVar[str]
    stopped: tuple[str, str] | None  # why `next` last returned None: (reason code, a sentence)

    def first(self, base: RequestSpec) -> RequestSpec:
        """The first request of a run (resets the paginator's memory)."""

    def next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        """The request after `prev`, or None when there are no more pages.

        Raises PaginationLoop when it would repeat itself, SourceError on a malformed answer.
        """

    def snapshot(self) -> dict[str, Any]:
        """The paginator's memory as JSON-ready data (page counter, loop guard, position)."""

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a `snapshot()` instead of `first()`. SourceError if it does not fit."""

    @property
    def addressable(self) -> bool:
        """True when every remaining request is known in advance (see `upcoming`)."""

    def upcoming(self, request: RequestSpec) -> Iterator[RequestSpec]:
        """The requests after `request` (the last one `first`/`next` returned), in order."""


class TableRows(Sequence[dict[str, Any]]):
    """The records of a page read straight into Arrow (`source.format` jsonl or csv), as a
    paginator sees them: `len` is the table's row count (all paginators use), and the loop
    guard compares `digest`, of the decoded body (its rows, as sent), instead of the records
    as JSON: no Python object per row is made. A row is made only if one is indexed."""

    def __init__(self, table: Any, body: bytes) -> None:
        self.table = table  # a pyarrow.Table
        self.digest = hashlib.blake2b(body, digest_size=16).hexdigest()

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self.table.to_pylist()[index]
        return self.table.slice(range(len(self))[index], 1).to_pylist()[0]


def _records_digest(records: Records) -> str:
    """What the loop guard compares between pages: their count, first and last record. Every
    record serialised again cost half of the page's parse (0.47 of 0.96 ms for 1,000 records
    of 12 fields); an API that ignores the paging sends the same ends again."""
    if isinstance(records, TableRows):
        return records.digest
    ends = [len(records), records[0], records[-1]] if len(records) else [0]
    data = orjson.dumps(ends, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _request_key(request: RequestSpec) -> str:
    # a digest, not the URL: the loop guard's memory goes into checkpoints, and URLs may hold
    # secrets; 64 bits keep a 10,000-page run's memory small with no practical collision
    # (with the body: a cursor may travel in it, the URL staying the same)
    text = full_url(request)
    if request.json is not None:
        text += orjson.dumps(request.json, option=orjson.OPT_SORT_KEYS, default=str).decode()
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass
class BasePaginator:
    """Loop guards around `_first` / `_next`, which subclasses implement."""

    type: ClassVar[str]
    _STATE: ClassVar[tuple[str, ...]] = ()  # subclass fields that go into snapshots
    # False where requests can never repeat (a page number or offset that only grows): no
    # memory of them is kept, so checkpoints stay small however long the run
    _REMEMBERS: ClassVar[bool] = True
    loop_guard: bool = field(default=True, kw_only=True)
    _seen: dict[str, None] = field(default_factory=dict, init=False, repr=False)  # ordered set
    _last_digest: str | None = field(default=None, init=False, repr=False)
    _page: int = field(default=0, init=False, repr=False)
    # why the last `next` returned None: (reason code, a sentence), for a test read's answer
    # (engine/preview.py); not part of snapshots
    stopped: tuple[str, str] | None = field(default=None, init=False, repr=False)

    def first(self, base: RequestSpec) -> RequestSpec:
        request = self._first(base)
        self._seen, self._last_digest, self._page = {}, None, 1
        self.stopped = None
        if self.loop_guard and self._REMEMBERS:
            self._seen[_request_key(request)] = None
        return request

    def next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        if self.loop_guard and records:  # repeated empty pages prove nothing: not compared
            digest = _records_digest(records)
            if digest == self._last_digest:
                raise PaginationLoop(
                    f"{self.type} pagination: page {self._page} has the same {len(records)}"
                    f" records as page {self._page - 1} (does the API ignore the paging"
                    " parameter?)",
                    url=sanitize_url(response.url),
                )
            self._last_digest = digest
        request = self._next(prev, response, records)
        if request is None:
            if self.stopped is None:
                self.stopped = ("single_request", "no pagination: one request")
            return None
        if self.loop_guard and self._REMEMBERS:
            key = _request_key(request)
            if key in self._seen:
                raise PaginationLoop(
                    f"{self.type} pagination: after page {self._page} the API points back to"
                    f" {self._describe(request)}, which this run already requested",
                    url=sanitize_url(full_url(request)),
                )
            self._seen[key] = None
        self._page += 1
        return request

    def snapshot(self) -> dict[str, Any]:
        state = {name.lstrip("_"): getattr(self, name) for name in self._STATE}
        return {
            "type": self.type,
            "page": self._page,
            "seen": list(self._seen),
            "last_digest": self._last_digest,
            **state,
        }

    def restore(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("type") != self.type:
            kind = state.get("type") if isinstance(state, dict) else type(state).__name__
            raise SourceError(
                f"cannot resume {self.type} pagination from a checkpoint of {kind!r} pagination"
            )
        try:
            page, seen, last = state["page"], state["seen"], state["last_digest"]
            values = {name: state[name.lstrip("_")] for name in self._STATE}
            if not isinstance(page, int) or not all(isinstance(s, str) for s in seen):
                raise TypeError(page)
            if last is not None and not isinstance(last, str):
                raise TypeError(last)
            if not all(v is None or isinstance(v, int) for v in values.values()):
                raise TypeError(values)
        except (KeyError, TypeError):
            raise SourceError(f"{self.type} pagination: the checkpoint is malformed") from None
        self._page, self._seen, self._last_digest = page, dict.fromkeys(seen), last
        for name, value in values.items():
            setattr(self, name, value)

    @property
    def addressable(self) -> bool:
        return False

    def upcoming(self, request: RequestSpec) -> Iterator[RequestSpec]:
        return iter(())

    def _first(self, base: RequestSpec) -> RequestSpec:
        return base

    def _next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        return None  # one page: what `none` is; every other type overrides this

    def _describe(self, request: RequestSpec) -> str:
        return sanitize_url(full_url(request))

    def _end(self, reason: str, detail: str) -> Next:
        """`_next`'s None, saying why (`stopped`)."""
        self.stopped = (reason, detail)
        return None
