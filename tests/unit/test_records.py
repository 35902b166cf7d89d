from __future__ import annotations

from typing import Any

import pytest

from tg_actors.errors import SourceError
from tg_actors.records import compile_path, extract_value, select_records

ROWS = [{"id": 1}, {"id": 2}]


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("$", ROWS, ROWS),  # "$": the body is the list
        ("$", {"id": 1}, [{"id": 1}]),  # a single object is one record
        ("$.data", {"data": ROWS}, ROWS),
        ("data", {"data": ROWS}, ROWS),  # "$." may be left out
        ("$.data", {"data": {"id": 1}}, [{"id": 1}]),
        ("$.data", {"data": None}, []),  # present, null: an empty page
        ("$.data", {"data": []}, []),
        ("$", None, []),  # empty body (204)
        ("$.result.items", {"result": {"items": ROWS}}, ROWS),
        ("$.groups[*].items", {"groups": [{"items": [{"id": 1}]}, {"items": [{"id": 2}]}]}, ROWS),
        ("$.data[*]", {"data": ROWS}, ROWS),
        ("$.groups[*].items", {"groups": []}, []),  # the list is there, and empty
        ("$.data[*]", {"data": []}, []),
    ],
)
def test_select_records(path: str, body: Any, expected: list[dict[str, Any]]) -> None:
    assert select_records(body, path) == expected


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("$.data", {"data": [1, 2]}),
        ("$.data", {"data": [{"id": 1}, "x"]}),
        ("$.data", {"data": "text"}),
        ("$", [[1]]),
    ],
)
def test_non_object_items_name_the_path(path: str, body: Any) -> None:
    with pytest.raises(SourceError, match=r"records path '\$(\.data)?'.*expected a JSON object"):
        select_records(body, path)


def test_invalid_path_is_a_source_error() -> None:
    with pytest.raises(SourceError, match=r"invalid JSONPath '\$\.\['"):
        select_records({}, "$.[")


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("$.next", {"next": "http://x/2"}, "http://x/2"),
        ("$.next", {}, None),
        ("$.next", {"next": None}, None),
        ("$.total", {"total": 0}, 0),  # falsy, still found
        ("$.meta.cursor", {"meta": {"cursor": "abc"}}, "abc"),
        ("$.items[*].id", {"items": [{"id": 7}, {"id": 8}]}, 7),  # first match
        ("$.next", None, None),
    ],
)
def test_extract_value(path: str, body: Any, expected: Any) -> None:
    assert extract_value(body, path) == expected


def test_paths_compile_once() -> None:
    assert compile_path("$.data") is compile_path("$.data")


@pytest.mark.parametrize(
    ("path", "body", "missing"),
    [
        ("$.data", {"other": ROWS}, "$.data"),
        ("data", {"error": "busy"}, "data"),
        ("$.result.items", {"result": {}}, "$.result.items"),
        ("$.result.items", {"status": "ok"}, "$.result.items"),
        ("$.data", ROWS, "$.data"),  # a list where an object with `data` was expected
        ("$.groups[*].items", {"error": "busy"}, "$.groups"),  # the part before the wildcard
        ("$.data[*]", {}, "$.data"),
    ],
)
def test_a_missing_records_path_is_an_error_naming_path_and_page(
    path: str, body: Any, missing: str
) -> None:
    """Issue 12 #13: a page that lacks the records path is not an empty page (which would end
    pagination and let the run succeed half-done); an explicit [] still is."""
    with pytest.raises(SourceError) as caught:
        select_records(body, path, page=3)
    message = str(caught.value)
    assert message.startswith(f"page 3: records path {path!r} not found in the response")
    if missing != path:
        assert f"({missing!r} is missing)" in message
    with pytest.raises(SourceError, match=r"^records path"):  # no page number given
        select_records(body, path)
