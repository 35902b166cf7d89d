"""Find records in a parsed JSON body with a JSONPath (`source.records`, `paginate.path`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext.parser import parse

from tg_actors.errors import SourceError


@lru_cache(maxsize=256)
def compile_path(path: str) -> JSONPath:
    """Parse a JSONPath once per process (parsing costs ~1 ms, a page may need it twice)."""
    try:
        return parse(path)
    except JSONPathError as exc:
        raise SourceError(f"invalid JSONPath {path!r}: {exc}") from exc


def select_records(body: Any, path: str) -> list[dict[str, Any]]:
    """The records at `path` in `body`.

    `"$"` on a list gives the list itself; a single object at the path gives `[obj]`; a
    missing path (or null) gives `[]`; several matches (`$.groups[*].items`) are concatenated.
    Raises SourceError naming the path when an item is not a JSON object.
    """
    if body is None:
        return []
    records: list[dict[str, Any]] = []
    for match in compile_path(path).find(body):
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


def extract_value(body: Any, path: str) -> Any | None:
    """The first value at `path` in `body`, or None when nothing matches."""
    if body is None:
        return None
    matches = compile_path(path).find(body)
    return matches[0].value if matches else None


def _excerpt(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
