"""Paginators: small pure state machines over requests and responses (dlt `BasePaginator`).

The source owns the loop and all I/O::

    request = paginator.first(base)          # or: paginator.restore(state); request = saved
    while request is not None:
        response, records = send(request)
        request = paginator.next(request, response, records)
        state = paginator.snapshot()         # JSON: a new paginator continues from here

One paginator object per run: it remembers what it already requested, so an API that sends
the same next link or cursor twice, or ignores the page parameter and keeps answering with
the same records, raises `PaginationLoop` instead of looping forever.

`page` and `offset` with a `total_path` know every remaining request once a response told
the total: `addressable` turns true and `upcoming(request)` lists the requests after
`request`, so the source may fetch several at once (it still calls `next` for each, in order).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin

from tg_actors.errors import SourceError
from tg_actors.records import extract_value
from tg_actors.redaction import sanitize_url
from tg_actors.sources.paginator_base import BasePaginator as BasePaginator
from tg_actors.sources.paginator_base import Next as Next
from tg_actors.sources.paginator_base import Paginator as Paginator
from tg_actors.sources.paginator_base import Records as Records
from tg_actors.sources.requestspec import Headers as Headers
from tg_actors.sources.requestspec import RequestSpec as RequestSpec
from tg_actors.sources.requestspec import ResponseView as ResponseView
from tg_actors.sources.requestspec import full_url as full_url
from tg_actors.sources.requestspec import merge_query as merge_query
from tg_actors.sources.requestspec import param_str
from tg_actors.sources.requestspec import parse_link_header as parse_link_header


@dataclass
class NoPaginator(BasePaginator):
    type = "none"


def _follow(prev: RequestSpec, response: ResponseView, link: str) -> RequestSpec:
    # the link carries the whole query (filters included): previous params would override it
    return replace(prev, url=urljoin(response.url or prev.url, link), params={})


@dataclass
class LinkHeaderPaginator(BasePaginator):
    type = "link_header"

    def _next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        link = parse_link_header(response.headers.get("link", "")).get("next")
        if not link:
            return self._end("no_next_link", 'the Link header has no rel="next"')
        return _follow(prev, response, link)


@dataclass
class NextUrlPaginator(BasePaginator):
    type = "next_url"
    path: str = "$.next"
    header: str | None = None  # the next URL from this response header instead of the body

    def _next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        if self.header is not None:
            link: Any = response.headers.get(self.header, "").strip()
        else:
            link = extract_value(response.body, self.path)
        if link is None or link == "":
            where = f"header {self.header}" if self.header is not None else f"{self.path!r}"
            return self._end("no_next_link", f"no next URL at {where}")
        if not isinstance(link, str):
            raise SourceError(
                f"next_url path {self.path!r} holds {type(link).__name__}, expected a URL string",
                url=sanitize_url(response.url),
            )
        return _follow(prev, response, link)  # a relative link resolves against the request


def more(path: str | None, response: ResponseView) -> bool:
    """False when `has_more_path` holds false (false, "false", 0): the API says this page is
    the last. Missing or true: the paginator's own rule decides."""
    if path is None:
        return True
    value = extract_value(response.body, path)
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no")
    return value is None or bool(value)


def with_body_value(body: Any, path: str, value: Any) -> dict[str, Any]:
    """A copy of JSON object `body` with `value` at dotted `path` (objects made on the way)."""
    out: dict[str, Any] = dict(body or {})
    node = out
    *parents, last = path.split(".")
    for name in parents:
        child = node.get(name)
        node[name] = dict(child) if isinstance(child, dict) else {}
        node = node[name]
    node[last] = value
    return out


def _total(kind: str, path: str | None, response: ResponseView) -> int | None:
    value = None if path is None else extract_value(response.body, path)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SourceError(
            f"{kind} total_path {path!r} holds {value!r}, expected an integer",
            url=sanitize_url(response.url),
        ) from None


@dataclass
class PagePaginator(BasePaginator):
    type = "page"
    _STATE = ("_number", "_size", "_total")
    _REMEMBERS = False  # the number only grows
    param: str = "page"
    start: int = 1
    size_param: str | None = None
    size: int | None = None  # the expected page size: a shorter page is the last
    total_path: str | None = None  # total records: ceil(total / page size) pages
    has_more_path: str | None = None
    _number: int = field(default=0, init=False, repr=False)
    _size: int | None = field(default=None, init=False, repr=False)  # as the API answers
    _total: int | None = field(default=None, init=False, repr=False)

    def _first(self, base: RequestSpec) -> RequestSpec:
        self._number, self._size, self._total = self.start, None, None
        params: dict[str, Any] = {self.param: self.start}
        if self.size_param and self.size:
            params[self.size_param] = self.size
        return base.with_params(params)

    def _next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        if not more(self.has_more_path, response):
            return self._end("has_more_false", f"{self.has_more_path!r} says this is the last page")
        total = _total("page", self.total_path, response)
        if total is not None:
            self._total = total
            if self._size is None and records:
                # the first page's length is the page size: an API that caps `size` is right
                self._size = len(records)
        if not records:
            return self._end("empty_page", "the page has no records")
        if self._total is not None and self._size:
            # a known total beats the short-page rule
            if self._number >= self._last():
                return self._end(
                    "total_reached", f"page {self._number} is the last of {self._total} records"
                )
        elif self.size is not None and len(records) < self.size:
            return self._end("short_page", f"{len(records)} records, fewer than size {self.size}")
        self._number += 1
        return prev.with_params({self.param: self._number})

    def _last(self) -> int:
        assert self._total is not None and self._size
        return self.start + max(1, math.ceil(self._total / self._size)) - 1

    @property
    def addressable(self) -> bool:
        return self._total is not None and bool(self._size)

    def upcoming(self, request: RequestSpec) -> Iterator[RequestSpec]:
        if self.addressable:
            for number in range(self._number + 1, self._last() + 1):
                yield request.with_params({self.param: number})


@dataclass
class OffsetPaginator(BasePaginator):
    type = "offset"
    _STATE = ("_offset", "_step", "_total")
    _REMEMBERS = False  # the offset only grows (an empty page ends the run)
    param: str = "offset"
    limit_param: str = "limit"
    limit: int = 100
    total_path: str | None = None
    has_more_path: str | None = None
    _offset: int = field(default=0, init=False, repr=False)
    _step: int | None = field(default=None, init=False, repr=False)  # the first page's length
    _total: int | None = field(default=None, init=False, repr=False)

    def _first(self, base: RequestSpec) -> RequestSpec:
        self._offset, self._step, self._total = 0, None, None
        return base.with_params({self.param: 0, self.limit_param: self.limit})

    def _next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        if not more(self.has_more_path, response):
            return self._end("has_more_false", f"{self.has_more_path!r} says this is the last page")
        total = _total("offset", self.total_path, response)
        if total is not None:
            self._total = total
        if not records:
            return self._end("empty_page", "the page has no records")
        if self._step is None and self._total is not None:
            self._step = len(records)
        # by what came back, not by `limit`: an API that returns more than asked skips nothing
        self._offset += len(records)
        if self._total is not None:
            # a known total beats the short-page rule: an API that caps `limit` below ours
            # answers short pages that are not the last
            if self._offset >= self._total:
                return self._end("total_reached", f"offset {self._offset} reached {self._total}")
        elif len(records) < self.limit:
            return self._end("short_page", f"{len(records)} records, fewer than limit {self.limit}")
        return prev.with_params({self.param: self._offset})

    @property
    def addressable(self) -> bool:
        return self._total is not None and bool(self._step)

    def upcoming(self, request: RequestSpec) -> Iterator[RequestSpec]:
        if self.addressable:
            assert self._step is not None and self._total is not None
            for offset in range(self._offset + self._step, self._total, self._step):
                yield request.with_params({self.param: offset})


@dataclass
class CursorPaginator(BasePaginator):
    type = "cursor"
    param: str = "cursor"
    path: str = "$.next_cursor"
    body_path: str | None = None  # the cursor into the JSON body here (GraphQL variables.after)
    has_more_path: str | None = None

    def _next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        if not more(self.has_more_path, response):
            return self._end("has_more_false", f"{self.has_more_path!r} says this is the last page")
        token = extract_value(response.body, self.path)
        if token is None or token == "" or token is False:
            return self._end("no_next_cursor", f"no cursor at {self.path!r}")
        if isinstance(token, dict | list):
            raise SourceError(
                f"cursor path {self.path!r} holds {type(token).__name__}, expected a token",
                url=sanitize_url(response.url),
            )
        if self.body_path is not None:  # the token keeps its JSON type in a body
            return replace(prev, json=with_body_value(prev.json, self.body_path, token))
        return prev.with_params({self.param: param_str(token)})

    def _describe(self, request: RequestSpec) -> str:
        if self.body_path is not None:
            value: Any = request.json
            for name in self.body_path.split("."):
                value = value.get(name) if isinstance(value, dict) else None
            token = str(value)
        else:
            token = str(request.params.get(self.param, ""))
        shown = token if len(token) <= 60 else token[:57] + "..."
        return f"cursor {shown!r}"


# registry keyed by the `type` of jobs.Paginate; constructor kwargs are the spec's fields
PAGINATORS: dict[str, type[BasePaginator]] = {
    cls.type: cls
    for cls in (
        NoPaginator,
        LinkHeaderPaginator,
        NextUrlPaginator,
        PagePaginator,
        OffsetPaginator,
        CursorPaginator,
    )
}


def make_paginator(spec: Any, *, loop_guard: bool = True) -> Paginator:
    """A fresh paginator for one run from a `jobs.Paginate` model (or any object with `.type`)."""
    kind = getattr(spec, "type", None)
    cls = PAGINATORS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValueError(f"unknown paginate type {kind!r}; valid: {', '.join(PAGINATORS)}")
    return cls(**spec.model_dump(exclude={"type"}), loop_guard=loop_guard)
