"""Paginators: small pure state machines over requests and responses (dlt `BasePaginator`).

The source owns the loop and all I/O::

    request = paginator.first(base)
    while request is not None:
        response, records = send(request)
        request = paginator.next(request, response, records)

One paginator object per run: it remembers what it already requested, so an API that sends
the same next link or cursor twice, or ignores the page parameter and keeps answering with
the same records, raises `PaginationLoop` instead of looping forever.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import orjson

from tg_actors.core.records import extract_value
from tg_actors.core.redaction import sanitize_url
from tg_actors.errors import PaginationLoop, SourceError

Records = list[dict[str, Any]]


@dataclass(frozen=True)
class RequestSpec:
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None

    def with_params(self, params: Mapping[str, Any]) -> RequestSpec:
        return replace(self, params={**self.params, **params})


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive header mapping (HTTP header names are case-insensitive)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._items = {k.lower(): v for k, v in headers.items()}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class ResponseView:
    status: int
    headers: Mapping[str, str]
    body: Any
    url: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", Headers(self.headers))


Next = RequestSpec | None  # None: no more pages


class Paginator(Protocol):
    def first(self, base: RequestSpec) -> RequestSpec:
        """The first request of a run (resets the paginator's memory)."""

    def next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        """The request after `prev`, or None when there are no more pages.

        Raises PaginationLoop when it would repeat itself, SourceError on a malformed answer.
        """


def merge_query(url: str, params: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """(URL without its query, the URL's query pairs overridden by `params`).

    httpx drops a URL's own query string whenever `params=` is given, so every request is sent
    as this pair. A param set to None removes that key; a list value repeats the key.
    """
    parts = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    for key, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((key, _param_str(v)) for v in values if v is not None)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), pairs


def full_url(request: RequestSpec) -> str:
    base, pairs = merge_query(request.url, request.params)
    return f"{base}?{urlencode(pairs)}" if pairs else base


def _param_str(value: Any) -> str:
    if isinstance(value, bool):  # as httpx does: lowercase, as most APIs expect
        return "true" if value else "false"
    return str(value)


def parse_link_header(value: str) -> dict[str, str]:
    """RFC 8288 `Link` header -> {rel: url}; a link with `rel="next last"` counts for both."""
    links: dict[str, str] = {}
    for chunk in value.split("<")[1:]:
        url, _, rest = chunk.partition(">")
        for param in rest.split(";"):
            name, _, rel = param.partition("=")
            if name.strip().lower() == "rel":
                for rel_name in rel.strip().strip(",").strip().strip('"').split():
                    links.setdefault(rel_name.lower(), url.strip())
    return links


def _records_digest(records: list[dict[str, Any]]) -> bytes:
    data = orjson.dumps(records, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass
class BasePaginator:
    """Loop guards around `_first` / `_next`, which subclasses implement."""

    type: ClassVar[str]
    loop_guard: bool = field(default=True, kw_only=True)
    _seen: set[str] = field(default_factory=set, init=False, repr=False)
    _last_digest: bytes | None = field(default=None, init=False, repr=False)
    _page: int = field(default=0, init=False, repr=False)

    def first(self, base: RequestSpec) -> RequestSpec:
        request = self._first(base)
        self._seen, self._last_digest, self._page = {full_url(request)}, None, 1
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
            return None
        key = full_url(request)
        if self.loop_guard and key in self._seen:
            raise PaginationLoop(
                f"{self.type} pagination: after page {self._page} the API points back to"
                f" {self._describe(request)}, which this run already requested",
                url=sanitize_url(key),
            )
        self._seen.add(key)
        self._page += 1
        return request

    def _first(self, base: RequestSpec) -> RequestSpec:
        return base

    def _next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        return None  # one page: what `none` is; every other type overrides this

    def _describe(self, request: RequestSpec) -> str:
        return sanitize_url(full_url(request))


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
        return _follow(prev, response, link) if link else None


@dataclass
class NextUrlPaginator(BasePaginator):
    type = "next_url"
    path: str = "$.next"

    def _next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        link = extract_value(response.body, self.path)
        if link is None or link == "":
            return None
        if not isinstance(link, str):
            raise SourceError(
                f"next_url path {self.path!r} holds {type(link).__name__}, expected a URL string",
                url=sanitize_url(response.url),
            )
        return _follow(prev, response, link)


@dataclass
class PagePaginator(BasePaginator):
    type = "page"
    param: str = "page"
    start: int = 1
    size_param: str | None = None
    size: int | None = None  # the expected page size: a shorter page is the last
    _number: int = field(default=0, init=False, repr=False)

    def _first(self, base: RequestSpec) -> RequestSpec:
        self._number = self.start
        params: dict[str, Any] = {self.param: self.start}
        if self.size_param and self.size:
            params[self.size_param] = self.size
        return base.with_params(params)

    def _next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        if not records or (self.size is not None and len(records) < self.size):
            return None
        self._number += 1
        return prev.with_params({self.param: self._number})


@dataclass
class OffsetPaginator(BasePaginator):
    type = "offset"
    param: str = "offset"
    limit_param: str = "limit"
    limit: int = 100
    total_path: str | None = None
    _offset: int = field(default=0, init=False, repr=False)

    def _first(self, base: RequestSpec) -> RequestSpec:
        self._offset = 0
        return base.with_params({self.param: 0, self.limit_param: self.limit})

    def _next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        if not records:
            return None
        # by what came back, not by `limit`: an API that returns more than asked skips nothing
        self._offset += len(records)
        total = self._total(response)
        if total is not None:
            # a known total beats the short-page rule: an API that caps `limit` below ours
            # answers short pages that are not the last
            if self._offset >= total:
                return None
        elif len(records) < self.limit:
            return None
        return prev.with_params({self.param: self._offset})

    def _total(self, response: ResponseView) -> int | None:
        value = None if self.total_path is None else extract_value(response.body, self.total_path)
        if value is None:
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SourceError(
                f"offset total_path {self.total_path!r} holds {value!r}, expected an integer",
                url=sanitize_url(response.url),
            ) from None


@dataclass
class CursorPaginator(BasePaginator):
    type = "cursor"
    param: str = "cursor"
    path: str = "$.next_cursor"

    def _next(self, prev: RequestSpec, response: ResponseView, records: Records) -> Next:
        token = extract_value(response.body, self.path)
        if token is None or token == "" or token is False:
            return None
        if isinstance(token, dict | list):
            raise SourceError(
                f"cursor path {self.path!r} holds {type(token).__name__}, expected a token",
                url=sanitize_url(response.url),
            )
        return prev.with_params({self.param: _param_str(token)})

    def _describe(self, request: RequestSpec) -> str:
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
