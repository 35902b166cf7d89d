"""Find records in a parsed JSON body with a JSONPath (`source.records`, `paginate.path`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext.parser import parse
from jsonpath_ng.jsonpath import Child, Fields, Root, This

from tg_actors.errors import SourceError


@lru_cache(maxsize=256)
def compile_path(path: str) -> JSONPath:
    """Parse a JSONPath once per process (parsing costs ~1 ms, a page may need it twice)."""
    try:
        return parse(path)
    except JSONPathError as exc:
        raise SourceError(f"invalid JSONPath {path!r}: {exc}") from exc


def select_records(body: Any, path: str, *, page: int | None = None) -> list[dict[str, Any]]:
    """The records at `path` in `body`.

    `"$"` on a list gives the list itself; a single object at the path gives `[obj]`; an
    explicit empty list (or null) gives `[]`, as does an empty body (None: 204); several
    matches (`$.groups[*].items`) are concatenated. A path that is not in the body is a
    SourceError naming the path (and `page`, when given), never an empty page: an error
    answer sent with 200 would otherwise end pagination and let the run succeed half-done.
    For a path with wildcards or filters, zero matches are an empty page when the part
    before them is there (`$.groups[*].items` on `{"groups": []}`), else the error.
    Raises SourceError naming the path when an item is not a JSON object.
    """
    if body is None:
        return []
    expr = compile_path(path)
    matches = expr.find(body)
    if not matches:
        _check_present(body, path, expr, page)
    records: list[dict[str, Any]] = []
    for match in matches:
        value = match.value
        if value is None:
            continue
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise SourceError(
                    f"records path {path!r}: item {index} is {type(item).__name__}"
                    f" ({_excerpt(item)}), expected a JSON object"
                )
        records.extend(items)
    return records


def _check_present(body: Any, path: str, expr: JSONPath, page: int | None) -> None:
    """Nothing matched `path`: fine when the path's plain prefix (before a wildcard, filter,
    index...) is there and only what it holds is empty; else SourceError."""
    prefix = _plain_prefix(expr)
    if prefix is None or (prefix is not expr and prefix.find(body)):
        return
    where = f"page {page}: " if page is not None else ""
    missing = "" if prefix is expr else f" ({str(prefix)!r} is missing)"
    raise SourceError(
        f"{where}records path {path!r} not found in the response{missing}; an empty page must"
        f" hold an empty list there. The body: {_excerpt(body, 200)}"
    )


def _plain(expr: JSONPath) -> bool:
    """Root, or a chain of single named fields: a path that either is there or is not."""
    if isinstance(expr, Root | This):
        return True
    if isinstance(expr, Fields):
        return len(expr.fields) == 1 and expr.fields[0] != "*"
    if isinstance(expr, Child):
        return _plain(expr.left) and _plain(expr.right)
    return False


def _plain_prefix(expr: JSONPath) -> JSONPath | None:
    """The longest plain leading part of `expr` (`expr` itself when it is all plain)."""
    if _plain(expr):
        return expr
    if isinstance(expr, Child):
        return _plain_prefix(expr.left)
    return None


def extract_value(body: Any, path: str) -> Any | None:
    """The first value at `path` in `body`, or None when nothing matches."""
    if body is None:
        return None
    matches = compile_path(path).find(body)
    return matches[0].value if matches else None


def _excerpt(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
