from __future__ import annotations

import json
import typing
from dataclasses import replace
from typing import Any

import pytest

from tg_actors import jobs
from tg_actors.errors import PaginationLoop, SourceError
from tg_actors.sources.pagination import (
    PAGINATORS,
    BasePaginator,
    CursorPaginator,
    LinkHeaderPaginator,
    NextUrlPaginator,
    NoPaginator,
    OffsetPaginator,
    PagePaginator,
    RequestSpec,
    ResponseView,
    full_url,
    make_paginator,
    merge_query,
    parse_link_header,
)

BASE = RequestSpec("http://api.test/orders", {"status": "paid"}, {"Accept": "x"}, None)
URL = "http://api.test/orders?status=paid"

# one scripted answer: (records, body, headers)
Answer = tuple[list[dict[str, Any]], Any, dict[str, str]]


def rows(*ids: int) -> list[dict[str, Any]]:
    return [{"id": i} for i in ids]


def drive(paginator: BasePaginator, answers: list[Answer]) -> list[RequestSpec]:
    """Feed answers in order; return every request made. Fails if it asks past the script."""
    request: RequestSpec | None = paginator.first(BASE)
    made: list[RequestSpec] = []
    for records, body, headers in answers:
        assert request is not None, f"stopped early after {len(made)} requests"
        made.append(request)
        response = ResponseView(200, headers, body, full_url(request))
        request = paginator.next(request, response, records)
    assert request is None, f"wants more than the {len(answers)} scripted pages: {request}"
    return made


def link(url: str, rel: str = "next") -> dict[str, str]:
    return {"Link": f'<{url}>; rel="{rel}"'}


# (paginator, scripted answers, the params of each request made)
CASES: list[tuple[str, BasePaginator, list[Answer], list[dict[str, Any]]]] = [
    ("none", NoPaginator(), [(rows(1), {}, {})], [{"status": "paid"}]),
    (
        "page: stops on an empty page",
        PagePaginator(),
        [(rows(1), {}, {}), (rows(2), {}, {}), ([], {}, {})],
        [{"status": "paid", "page": p} for p in (1, 2, 3)],
    ),
    (
        "page: short page is last when size is given; size sent as size_param",
        PagePaginator(param="p", start=0, size_param="per_page", size=2),
        [(rows(1, 2), {}, {}), (rows(3), {}, {})],
        [{"status": "paid", "p": p, "per_page": 2} for p in (0, 1)],
    ),
    (
        "page: without size a short page is not the last",
        PagePaginator(),
        [(rows(1, 2), {}, {}), (rows(3), {}, {}), ([], {}, {})],
        [{"status": "paid", "page": p} for p in (1, 2, 3)],
    ),
    (
        "offset: short page is last",
        OffsetPaginator(limit=2),
        [(rows(1, 2), {}, {}), (rows(3), {}, {})],
        [{"status": "paid", "offset": o, "limit": 2} for o in (0, 2)],
    ),
    (
        "offset: empty page is last",
        OffsetPaginator(param="skip", limit_param="take", limit=2),
        [(rows(1, 2), {}, {}), ([], {}, {})],
        [{"status": "paid", "skip": o, "take": 2} for o in (0, 2)],
    ),
    (
        "offset: stops when offset reaches total",
        OffsetPaginator(limit=2, total_path="$.total"),
        [(rows(1, 2), {"total": 4}, {}), (rows(3, 4), {"total": 4}, {})],
        [{"status": "paid", "offset": o, "limit": 2} for o in (0, 2)],
    ),
    (
        "offset: with a total, short pages (a capped limit) are not the last",
        OffsetPaginator(limit=3, total_path="$.meta.total"),
        [(rows(1, 2), {"meta": {"total": 4}}, {}), (rows(3, 4), {"meta": {"total": 4}}, {})],
        [{"status": "paid", "offset": o, "limit": 3} for o in (0, 2)],
    ),
    (
        "page: with a total, ceil(total / size) pages and no empty page after them",
        PagePaginator(total_path="$.total"),
        [
            (rows(1, 2), {"total": 5}, {}),
            (rows(3, 4), {"total": 5}, {}),
            (rows(5), {"total": 5}, {}),
        ],
        [{"status": "paid", "page": p} for p in (1, 2, 3)],
    ),
    (
        "page: a total beats the short-page rule (the API caps the size at 2)",
        PagePaginator(size_param="n", size=3, total_path="$.meta.total"),
        [(rows(1, 2), {"meta": {"total": 4}}, {}), (rows(3, 4), {"meta": {"total": 4}}, {})],
        [{"status": "paid", "page": p, "n": 3} for p in (1, 2)],
    ),
    (
        "page: without a total in the body the old rules hold",
        PagePaginator(size=2, total_path="$.total"),
        [(rows(1, 2), {}, {}), (rows(3), {}, {})],
        [{"status": "paid", "page": p} for p in (1, 2)],
    ),
    (
        "cursor: until the cursor is null",
        CursorPaginator(),
        [(rows(1), {"next_cursor": "a"}, {}), (rows(2), {"next_cursor": 7}, {}), (rows(3), {}, {})],
        [{"status": "paid"}, {"status": "paid", "cursor": "a"}, {"status": "paid", "cursor": "7"}],
    ),
    (
        "cursor: an empty string ends it, a custom param and path",
        CursorPaginator(param="after", path="$.meta.next"),
        [(rows(1), {"meta": {"next": "x"}}, {}), (rows(2), {"meta": {"next": ""}}, {})],
        [{"status": "paid"}, {"status": "paid", "after": "x"}],
    ),
    (
        "cursor: an empty page with a cursor goes on",
        CursorPaginator(),
        [([], {"next_cursor": "a"}, {}), ([], {"next_cursor": "b"}, {}), (rows(1), {}, {})],
        [{"status": "paid"}, {"status": "paid", "cursor": "a"}, {"status": "paid", "cursor": "b"}],
    ),
]


@pytest.mark.parametrize(
    ("name", "paginator", "answers", "params"), CASES, ids=[c[0] for c in CASES]
)
def test_stop_conditions(
    name: str, paginator: BasePaginator, answers: list[Answer], params: list[dict[str, Any]]
) -> None:
    made = drive(paginator, answers)
    assert [r.params for r in made] == params
    assert all(r.url == BASE.url and r.headers == BASE.headers for r in made)


LINK_CASES: list[tuple[str, BasePaginator, list[Answer], list[str]]] = [
    (
        "link_header: absolute, then relative, then none",
        LinkHeaderPaginator(),
        [
            (rows(1), {}, link("http://api.test/orders?page=2")),
            (rows(2), {}, link("/orders?page=3")),
            (rows(3), {}, {}),
        ],
        [URL, "http://api.test/orders?page=2", "http://api.test/orders?page=3"],
    ),
    (
        "link_header: only rel=last is no next; header name in any case",
        LinkHeaderPaginator(),
        [(rows(1), {}, {"LINK": '<http://api.test/orders?page=9>; rel="last"'})],
        [URL],
    ),
    (
        "next_url: absolute, relative query, then null",
        NextUrlPaginator(),
        [
            (rows(1), {"next": "http://other.test/v2/orders?p=2"}, {}),
            (rows(2), {"next": "?p=3"}, {}),
            (rows(3), {"next": None}, {}),
        ],
        [URL, "http://other.test/v2/orders?p=2", "http://other.test/v2/orders?p=3"],
    ),
    (
        "next_url: custom path, empty string ends it",
        NextUrlPaginator(path="$.links.next"),
        [(rows(1), {"links": {"next": "page2"}}, {}), (rows(2), {"links": {"next": ""}}, {})],
        [URL, "http://api.test/page2"],
    ),
]


@pytest.mark.parametrize(
    ("name", "paginator", "answers", "urls"), LINK_CASES, ids=[c[0] for c in LINK_CASES]
)
def test_link_following(
    name: str, paginator: BasePaginator, answers: list[Answer], urls: list[str]
) -> None:
    made = drive(paginator, answers)
    # a followed link carries the whole query: the first request's params are not re-added
    assert [full_url(r) for r in made] == urls


# each script makes the paginator repeat itself on its last answer
LOOPS: list[tuple[str, BasePaginator, list[Answer], str]] = [
    (
        "link back to the first URL",
        LinkHeaderPaginator(),
        [(rows(1), {}, link("http://api.test/orders?page=2")), (rows(2), {}, link(URL))],
        "points back to http://api.test/orders",
    ),
    (
        "next_url A -> B -> A",
        NextUrlPaginator(),
        [
            (rows(1), {"next": "/b"}, {}),
            (rows(2), {"next": "/a"}, {}),
            (rows(3), {"next": "/b"}, {}),
        ],
        "already requested",
    ),
    (
        "cursor repeats",
        CursorPaginator(),
        [(rows(1), {"next_cursor": "abc"}, {}), (rows(2), {"next_cursor": "abc"}, {})],
        "cursor 'abc'",
    ),
    (
        "page parameter ignored: same records again",
        PagePaginator(),
        [(rows(1, 2), {}, {}), (rows(1, 2), {}, {})],
        "page 2 has the same 2 records as page 1",
    ),
    (
        "offset ignored",
        OffsetPaginator(limit=2),
        [(rows(1, 2), {}, {}), (rows(1, 2), {}, {})],
        "same 2 records",
    ),
]


@pytest.mark.parametrize(
    ("name", "paginator", "answers", "message"), LOOPS, ids=[c[0] for c in LOOPS]
)
def test_loop_guards(
    name: str, paginator: BasePaginator, answers: list[Answer], message: str
) -> None:
    with pytest.raises(PaginationLoop, match=message):
        drive(paginator, answers + [([], {}, {})])


def test_loop_guard_can_be_turned_off() -> None:
    same_records: list[Answer] = [(rows(1), {}, {}), (rows(1), {}, {}), ([], {}, {})]
    with pytest.raises(PaginationLoop):  # the script trips the guard while it is on
        drive(PagePaginator(), same_records)
    paginator = PagePaginator(loop_guard=False)
    made = drive(paginator, same_records)
    assert [r.params for r in made] == [{"status": "paid", "page": p} for p in (1, 2, 3)]
    assert paginator.snapshot()["last_digest"] is None  # no records remembered to compare

    same_cursor: list[Answer] = [
        (rows(1), {"next_cursor": "abc"}, {}),
        (rows(2), {"next_cursor": "abc"}, {}),
        (rows(3), {}, {}),
    ]
    with pytest.raises(PaginationLoop):
        drive(CursorPaginator(), same_cursor)
    cursor = CursorPaginator(loop_guard=False)
    made = drive(cursor, same_cursor)
    assert [r.params for r in made] == [
        {"status": "paid"},
        {"status": "paid", "cursor": "abc"},
        {"status": "paid", "cursor": "abc"},
    ]
    assert cursor.snapshot()["seen"] == []  # no requests remembered either


def test_first_resets_the_memory_of_a_run() -> None:
    paginator = CursorPaginator()
    # the run ends on the records it began with: a second run, remembering the first, would
    # see its first page repeat the last one, and its cursors as already requested
    script: list[Answer] = [
        (rows(1), {"next_cursor": "a"}, {}),
        (rows(2), {"next_cursor": "b"}, {}),
        (rows(1), {}, {}),
    ]
    first_run = drive(paginator, script)
    after = paginator.snapshot()
    assert after["page"] == 3 and len(after["seen"]) == 3 and after["last_digest"] is not None

    assert paginator.first(BASE) == first_run[0]
    fresh = paginator.snapshot()
    assert fresh["page"] == 1 and fresh["last_digest"] is None
    assert fresh["seen"] == after["seen"][:1]  # only the first request, just made
    assert drive(paginator, script) == first_run  # a second run may see the same cursors


def test_loop_message_masks_secrets_in_urls() -> None:
    secret_link = link("http://api.test/orders?access_token=s3cr3t-value")
    with pytest.raises(PaginationLoop) as caught:
        drive(LinkHeaderPaginator(), [(rows(1), {}, secret_link), (rows(2), {}, secret_link)])
    assert "s3cr3t-value" not in str(caught.value)
    assert "s3cr3t-value" not in caught.value.url


@pytest.mark.parametrize(
    ("paginator", "body", "message"),
    [
        (NextUrlPaginator(), {"next": {"href": "x"}}, "expected a URL string"),
        (CursorPaginator(), {"next_cursor": ["x"]}, "expected a token"),
        (OffsetPaginator(limit=1, total_path="$.total"), {"total": "many"}, "expected an integer"),
    ],
)
def test_malformed_answers(paginator: BasePaginator, body: Any, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        drive(paginator, [(rows(1), body, {})])


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<http://x/2>; rel="next"', {"next": "http://x/2"}),
        (
            '<http://x/2>; rel=next, <http://x/9>; rel="last"',
            {"next": "http://x/2", "last": "http://x/9"},
        ),
        ('<http://x/9>; rel="last next"', {"last": "http://x/9", "next": "http://x/9"}),
        ('<http://x/2?a=1;b=2>; title="t"; rel="next"', {"next": "http://x/2?a=1;b=2"}),
        ("", {}),
    ],
)
def test_parse_link_header(header: str, expected: dict[str, str]) -> None:
    assert parse_link_header(header) == expected


@pytest.mark.parametrize(
    ("url", "params", "pairs"),
    [
        ("http://h/p?a=1&b=2", {}, [("a", "1"), ("b", "2")]),
        ("http://h/p?a=1&b=2", {"a": 3}, [("b", "2"), ("a", "3")]),  # params win
        ("http://h/p?a=1&a=2", {"c": True}, [("a", "1"), ("a", "2"), ("c", "true")]),
        ("http://h/p?a=1", {"a": None}, []),  # None removes
        ("http://h/p", {"ids": [1, 2]}, [("ids", "1"), ("ids", "2")]),
        ("http://h/p?x=#frag", {}, [("x", "")]),
    ],
)
def test_merge_query(url: str, params: dict[str, Any], pairs: list[tuple[str, str]]) -> None:
    assert merge_query(url, params) == ("http://h/p", pairs)


def test_response_headers_are_case_insensitive() -> None:
    view = ResponseView(200, {"X-Total": "5"}, None, "http://h/")
    assert view.headers["x-total"] == view.headers.get("X-TOTAL") == "5"


def paginate_types() -> set[str]:
    union = typing.get_args(jobs.Paginate)[0]
    return {typing.get_args(m.model_fields["type"].annotation)[0] for m in typing.get_args(union)}


def test_registry_covers_the_job_file() -> None:
    assert set(PAGINATORS) == paginate_types()


@pytest.mark.parametrize(
    "paginate",
    [
        {"type": "none"},
        {"type": "link_header"},
        {"type": "next_url", "path": "$.links.next"},
        {"type": "page", "param": "p", "start": 0, "size_param": "n", "size": 50},
        {"type": "page", "total_path": "$.meta.total"},
        {"type": "offset", "limit": 25, "total_path": "$.total"},
        {"type": "cursor", "param": "after", "path": "$.cursor"},
    ],
)
def test_make_paginator_from_job_spec(paginate: dict[str, Any]) -> None:
    spec = jobs.HttpSource.model_validate({"url": "http://h/", "paginate": paginate})
    paginator = make_paginator(spec.paginate)
    assert isinstance(paginator, PAGINATORS[paginate["type"]])
    for key, value in paginate.items():
        if key != "type":
            assert getattr(paginator, key) == value


def test_make_paginator_unknown_type_lists_valid_ones() -> None:
    class Fake:
        type = "sideways"

    with pytest.raises(
        ValueError, match="unknown paginate type 'sideways'; valid: none, link_header"
    ):
        make_paginator(Fake())


def feed(paginator: BasePaginator, request: RequestSpec, answers: list[Answer]) -> RequestSpec:
    for records, body, headers in answers:
        response = ResponseView(200, headers, body, full_url(request))
        following = paginator.next(request, response, records)
        assert following is not None
        request = following
    return request


ALL_CASES = [(c[0], c[1], c[2]) for c in CASES + LINK_CASES if len(c[2]) > 1]


@pytest.mark.parametrize(("name", "paginator", "answers"), ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_a_snapshot_lets_a_new_paginator_continue(
    name: str, paginator: BasePaginator, answers: list[Answer]
) -> None:
    full = drive(replace(paginator), answers)
    for k in range(1, len(answers)):
        before = replace(paginator)
        request = feed(before, before.first(BASE), answers[:k])
        state = json.loads(json.dumps(before.snapshot()))  # JSON-ready
        after = replace(paginator)
        after.restore(state)
        assert after.snapshot() == state
        made = [request]
        for records, body, headers in answers[k:]:
            response = ResponseView(200, headers, body, full_url(made[-1]))
            following = after.next(made[-1], response, records)
            if following is None:
                break
            made.append(following)
        assert made == full[k:], f"resumed after answer {k}"


def test_snapshots_hold_no_urls() -> None:
    paginator = LinkHeaderPaginator()
    request = paginator.first(BASE)
    feed(paginator, request, [(rows(1), {}, link("http://api.test/o?access_token=s3cr3t-value"))])
    assert "s3cr3t" not in json.dumps(paginator.snapshot())


def test_restore_checks_the_type_and_the_shape() -> None:
    state = PagePaginator().snapshot()
    with pytest.raises(SourceError, match="cannot resume offset pagination from .* 'page'"):
        OffsetPaginator().restore(state)
    with pytest.raises(SourceError, match="page pagination: the checkpoint is malformed"):
        PagePaginator().restore({**state, "number": "3"})
    with pytest.raises(SourceError, match="malformed"):
        PagePaginator().restore({"type": "page"})


@pytest.mark.parametrize(
    ("paginator", "body", "records", "upcoming"),
    [
        (PagePaginator(total_path="$.total"), {"total": 7}, rows(1, 2), [3, 4]),
        (PagePaginator(start=0, total_path="$.total"), {"total": 6}, rows(1, 2), [2]),
        (OffsetPaginator(limit=2, total_path="$.total"), {"total": 7}, rows(1, 2), [4, 6]),
        # an API that caps the limit: the step is what the first page held
        (OffsetPaginator(limit=5, total_path="$.total"), {"total": 7}, rows(1, 2), [4, 6]),
    ],
)
def test_addressable_paginators_list_the_requests_ahead(
    paginator: BasePaginator, body: Any, records: list[dict[str, Any]], upcoming: list[int]
) -> None:
    first = paginator.first(BASE)
    assert not paginator.addressable and list(paginator.upcoming(first)) == []
    second = paginator.next(first, ResponseView(200, {}, body, URL), records)
    assert second is not None and paginator.addressable
    param = "page" if isinstance(paginator, PagePaginator) else "offset"
    assert [r.params[param] for r in paginator.upcoming(second)] == upcoming
    assert all(r.url == BASE.url and r.headers == BASE.headers for r in paginator.upcoming(second))


@pytest.mark.parametrize(
    "paginator",
    [NoPaginator(), LinkHeaderPaginator(), NextUrlPaginator(), CursorPaginator(), PagePaginator()],
)
def test_others_are_never_addressable(paginator: BasePaginator) -> None:
    first = paginator.first(BASE)
    paginator.next(first, ResponseView(200, {}, {"total": 9, "next": "/x"}, URL), rows(1))
    assert not paginator.addressable


@pytest.mark.parametrize(
    "paginator", [PagePaginator(), OffsetPaginator(limit=1)], ids=["page", "offset"]
)
def test_paginators_that_only_move_forward_keep_no_memory_of_urls(
    paginator: BasePaginator,
) -> None:
    request = paginator.first(BASE)
    request = feed(paginator, request, [(rows(i), {}, {}) for i in range(1, 500)])
    state = paginator.snapshot()
    assert state["seen"] == [] and state["page"] == 500
    assert len(json.dumps(state)) < 200  # a checkpoint stays small however long the run
