"""What paginators read and write: a request to make, a response seen, and URL query helpers.

Pure values (no I/O); `sources.pagination` re-exports them, so callers import from there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


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


def merge_query(url: str, params: Mapping[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    """(URL without its query, the URL's query pairs overridden by `params`).

    httpx drops a URL's own query string whenever `params=` is given, so every request is sent
    as this pair. A param set to None removes that key; a list value repeats the key.
    """
    parts = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    for key, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((key, param_str(v)) for v in values if v is not None)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), pairs


def full_url(request: RequestSpec) -> str:
    base, pairs = merge_query(request.url, request.params)
    return f"{base}?{urlencode(pairs)}" if pairs else base


def param_str(value: Any) -> str:
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
