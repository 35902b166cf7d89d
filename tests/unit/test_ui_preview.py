"""The Editor's test read and guided form, pure: ui.preview turns a preview answer (the shape
of POST /api/preview) into what the Test button shows; ui.form writes the YAML of a job that
validates, for every auth and pagination kind, secrets only as `${NAME}`."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
import yaml

from tg_actors.errors import JobValidationError
from tg_actors.jobs import parse_job
from ui import form as jobform
from ui import preview as pv

ANSWER: dict[str, Any] = {
    "job": "orders",
    "table": "orders",
    "pages_read": 3,
    "records": 1500,
    "elapsed_ms": 123.4,
    "requests": [
        {
            "kind": "auth", "method": "POST", "url": "http://x/token", "headers": {},
            "status": 200, "elapsed_ms": 4.25, "bytes": 80, "content_type": "application/json",
            "excerpt": None,
        },
        {
            "kind": "page", "method": "GET", "url": "http://x/orders?page=1&api_key=***",
            "headers": {"authorization": "***"}, "status": 200, "elapsed_ms": 12.34,
            "bytes": 12345, "content_type": "application/json", "excerpt": None,
        },
        {
            "kind": "page", "method": "GET", "url": "http://x/orders?page=2&api_key=***",
            "headers": {}, "status": 200, "elapsed_ms": 10.0, "bytes": 999,
            "content_type": "text/html", "excerpt": "<html>\n  <body>" + "x" * 400,
        },
    ],
    "pages": [{"number": 1, "url": "http://x/orders?page=1", "records": 500, "bytes": 12345}],
    "sample": {
        "raw": [{"id": 1, "amount": "9.5", "tags": ["a", "b"]}, {"id": 2, "extra": {"k": 1}}],
        "transformed": [{"id": 1, "amount": 9.5}, {"id": 2, "amount": None}],
    },
    "columns": [
        {"name": "id", "type": "BIGINT", "change": "unchanged"},
        {"name": "amount", "type": "DOUBLE", "change": "new column"},
        {"name": "note", "type": "VARCHAR", "change": None},
    ],
    "table_exists": True,
    "next_request": {"method": "GET", "url": "http://x/orders?page=4&api_key=***"},
    "stop": {"reason": "page_limit", "detail": "stopped after 3 pages (the preview's limit)"},
    "chain": None,
    "cursor": {"param": "updated_since", "sent": None, "newest": "2024-05-01T00:00:00Z"},
    "warnings": ["the first two pages are identical", "records path <b>x</b>\nmatched nothing"],
    "error": None,
}  # fmt: skip


def test_status_line_says_what_was_read_and_why_it_stopped() -> None:
    line = pv.status_line(ANSWER)
    assert "job 'orders'" in line
    assert "1,500 records on 3 pages in 123 ms (3 requests)" in line
    assert "nothing was written" in line
    assert "`page_limit`: stopped after 3 pages" in line
    assert "Table `orders` exists" in line
    assert "no updated_since sent (first run)" in line and "2024-05-01T00:00:00Z" in line
    assert "Error" not in line


def test_status_line_of_a_failed_read_and_a_stop_without_detail() -> None:
    answer = ANSWER | {
        "records": 1,
        "pages_read": 1,
        "stop": {"reason": "error", "detail": None},
        "error": "HTTP 500 from http://x/orders",
        "table_exists": False,
        "cursor": None,
        "chain": {
            "row": {"customer_id": 7},
            "window": {"start": "2024-01-01", "end": "2024-01-08"},
        },
        "next_request": None,
    }
    line = pv.status_line(answer)
    assert "1 record on 1 page " in line
    assert "`error`: the read failed" in line
    assert "**Error:** HTTP 500 from http://x/orders" in line
    assert "does not exist yet" in line
    assert "row customer_id=7; window [2024-01-01, 2024-01-08)" in line
    assert pv.next_request_text(answer) == "No next request: the read failed."
    assert "no stop reason" in pv.stop_text(None)
    assert pv.stop_text({"reason": "short_page"}) == (
        "`short_page`: a page held fewer records than the page size"
    )


def test_warnings_are_a_markdown_list_of_single_lines_without_html() -> None:
    text = pv.warnings_markdown(ANSWER)
    assert text.splitlines()[0] == "**Warnings**"
    assert "- the first two pages are identical" in text
    assert "- records path &lt;b&gt;x&lt;/b&gt; matched nothing" in text
    assert pv.warnings_markdown(ANSWER | {"warnings": []}) == "No warnings."


def test_request_rows_in_order_with_excerpts_shortened() -> None:
    rows = pv.request_rows(ANSWER)
    assert [r[:6] for r in rows] == [
        ["auth", "POST", "http://x/token", 200, 4.2, 80],
        ["page", "GET", "http://x/orders?page=1&api_key=***", 200, 12.3, 12345],
        ["page", "GET", "http://x/orders?page=2&api_key=***", 200, 10.0, 999],
    ]
    assert rows[0][6] == ""
    excerpt = rows[2][6]
    assert excerpt.startswith("<html> <body>xxx") and excerpt.endswith("…")
    assert len(excerpt) == pv.EXCERPT_CHARS
    assert len(pv.REQUEST_COLUMNS) == len(rows[0])
    # a request that got no answer (connection refused): empty cells, not None
    failed = pv.request_rows({"requests": [{"method": "GET", "url": "http://x"}]})
    assert failed == [["page", "GET", "http://x", "", "", "", ""]]


def test_samples_every_key_once_nested_values_as_json() -> None:
    transformed, raw = pv.samples(ANSWER)
    assert list(transformed.columns) == ["id", "amount"]
    assert transformed.values.tolist() == [[1, 9.5], [2, None]]
    assert list(raw.columns) == ["id", "amount", "tags", "extra"]
    assert raw.values.tolist() == [[1, "9.5", '["a","b"]', None], [2, None, None, '{"k":1}']]
    empty_t, empty_r = pv.samples({"sample": None})
    assert empty_t.empty and empty_r.empty
    long = pv.sample_frame([{"blob": {"k": "v" * 1000}}]).iloc[0, 0]
    assert len(long) == pv.CELL_CHARS and long.endswith("…")


def test_column_rows_and_next_request() -> None:
    assert pv.column_rows(ANSWER) == [
        ["id", "BIGINT", "unchanged"],
        ["amount", "DOUBLE", "new column"],
        ["note", "VARCHAR", ""],
    ]
    assert pv.next_request_text(ANSWER) == (
        "**Next request** of a full read: `GET http://x/orders?page=4&api_key=***`"
    )
    assert "would stop here" in pv.next_request_text(ANSWER | {"next_request": None})
    assert pv.status_line({}).startswith("Test read of job '?': ? records on ? pages")


# --- the guided form -------------------------------------------------------------------------

SECRET_KEYS = {
    "token",
    "username",
    "password",
    "value",
    "client_id",
    "client_secret",
    "refresh_token",
}
BASE = jobform.JobForm(name="orders", url="https://api.example.com/orders", records="$.data")


def parsed(form: jobform.JobForm) -> dict[str, Any]:
    text = jobform.job_yaml(form)
    assert text.startswith("# Written by the form")
    assert "yaml-language-server" not in text
    data = yaml.safe_load(text)
    parse_job(data)  # raises JobValidationError when the form wrote a job that does not validate
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("kind", jobform.AUTH_KINDS)
def test_every_auth_kind_writes_a_valid_job_with_secrets_as_references(kind: str) -> None:
    data = parsed(replace(BASE, auth=kind, token_url="https://a/token", login_url="https://a/in"))
    auth = data["source"].get("auth")
    if kind == "none":
        assert auth is None
        return
    assert auth["type"] == kind
    secrets = {k: v for k, v in auth.items() if k in SECRET_KEYS}
    if kind == "login":
        secrets = auth["body"]
    assert secrets, auth
    for value in secrets.values():
        assert value.startswith("${") and value.endswith("}"), auth
    assert jobform.secret_notes(replace(BASE, auth=kind)) == []


def test_auth_fields_as_the_job_model_names_them() -> None:
    bearer = parsed(replace(BASE, auth="bearer", token_env="${SHOP_TOKEN}"))["source"]["auth"]
    assert bearer == {"type": "bearer", "token": "${SHOP_TOKEN}"}
    key = parsed(replace(BASE, auth="api_key", key_name="api_key", key_in="query"))
    assert key["source"]["auth"] == {
        "type": "api_key", "name": "api_key", "in": "query", "value": "${API_KEY}",
    }  # fmt: skip
    refresh = parsed(
        replace(BASE, auth="oauth2_refresh_token", token_url="https://a/t", client_secret_env="")
    )["source"]["auth"]
    assert "client_secret" not in refresh and refresh["refresh_token"] == "${API_REFRESH_TOKEN}"
    client = parsed(
        replace(BASE, auth="oauth2_client_credentials", token_url="https://a/t", scope="read")
    )["source"]["auth"]
    assert client["client_secret"] == "${API_CLIENT_SECRET}" and client["scope"] == "read"


@pytest.mark.parametrize("kind", jobform.PAGINATE_KINDS)
def test_every_pagination_kind_writes_a_valid_job(kind: str) -> None:
    data = parsed(replace(BASE, paginate=kind, page_size_param="per_page", page_size=500))
    paginate = data["source"]["paginate"]
    assert paginate["type"] == kind
    expected: dict[str, dict[str, Any]] = {
        "page": {"param": "page", "size_param": "per_page", "size": 500},
        "offset": {"param": "offset", "limit_param": "limit", "limit": 100},
        "cursor": {"param": "cursor", "path": "$.next_cursor"},
        "next_url": {"path": "$.next"},
    }
    assert paginate == {"type": kind, **expected.get(kind, {})}


def test_incremental_destination_schedule_and_method() -> None:
    data = parsed(
        replace(
            BASE,
            method="POST",
            cursor_field="updated_at",
            since_param="updated_since",
            initial="2024-01-01T00:00:00Z",
            table="shop_orders",
            write="merge",
            primary_key="id, shop",
            interval="15m",
        )
    )
    assert data["schedule"] == {"interval": "15m"}
    assert data["source"]["method"] == "POST"
    assert data["source"]["incremental"] == {
        "cursor_field": "updated_at", "param": "updated_since", "initial": "2024-01-01T00:00:00Z",
    }  # fmt: skip
    assert data["destination"] == {
        "table": "shop_orders", "write": "merge", "primary_key": ["id", "shop"],
    }  # fmt: skip
    plain = parsed(BASE)
    assert "schedule" not in plain and "method" not in plain["source"]
    assert "incremental" not in plain["source"]
    assert plain["destination"] == {"table": "orders", "write": "append"}
    assert plain["source"]["records"] == "$.data"
    assert parsed(replace(BASE, records=""))["source"]["records"] == "$"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"name": ""}, "Name"),
        ({"url": " "}, "URL"),
        ({"write": "merge"}, "Primary key"),
        ({"cursor_field": "updated_at"}, "Incremental"),
        ({"paginate": "page", "page_size": 0}, "Page size must be a whole number"),
        ({"paginate": "offset", "limit": "ten"}, "Limit must be a whole number"),
        ({"paginate": "page", "page_size": 50}, "give the parameter it is sent as"),
        ({"auth": "api_key", "key_name": ""}, "API key name"),
        ({"auth": "oauth2_client_credentials"}, "Token URL"),
        ({"auth": "login"}, "Login URL"),
        ({"auth": "bearer", "token_env": ""}, "Token variable"),
        ({"auth": "kerberos"}, "auth type 'kerberos'"),
        ({"paginate": "scroll"}, "pagination type 'scroll'"),
    ],
)
def test_what_the_form_needs_is_said_and_nothing_written(
    changes: dict[str, Any], problem: str
) -> None:
    with pytest.raises(jobform.FormError) as caught:
        jobform.job_yaml(replace(BASE, **changes))
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_a_pasted_secret_never_reaches_the_yaml() -> None:
    secret = "sk_live_abc.def-123"
    with pytest.raises(jobform.FormError) as caught:
        jobform.job_yaml(replace(BASE, auth="bearer", token_env=secret))
    assert secret not in str(caught.value)
    assert "NAME, never the secret itself" in str(caught.value)


def test_secret_notes_for_names_outside_the_default_allow_list() -> None:
    form = replace(BASE, auth="basic", username_env="SHOP_LOGIN", password_env="SHOP_PASSWORD")
    notes = jobform.secret_notes(form)
    assert len(notes) == 1 and "${SHOP_LOGIN}" in notes[0]
    assert jobform.secret_notes(replace(form, username_env="TG_USER")) != []  # TG_ is the engine's
    # names the chosen kind does not use are not looked at
    assert jobform.secret_notes(replace(BASE, auth="none", token_env="WHATEVER")) == []


def test_values_come_in_field_order_none_as_the_default() -> None:
    values: list[Any] = [None] * len(jobform.FIELD_NAMES)
    values[jobform.FIELD_NAMES.index("name")] = "x"
    form = jobform.JobForm.from_values(*values)
    assert form.name == "x" and form.records == "$" and form.auth == "none"
    with pytest.raises(ValueError, match="expected"):
        jobform.JobForm.from_values("x")
    assert jobform.visible("page", jobform.PAGINATE_FIELDS) == {
        "page_param", "page_size_param", "page_size",
    }  # fmt: skip
    assert jobform.visible(None, jobform.AUTH_FIELDS) == set()


# --- the Editor's handlers, over a stand-in API (no Gradio server) -----------------------------


class PreviewApi:
    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.answer = answer
        self.asked: list[tuple[str, int, int]] = []

    async def preview(self, body: str, pages: int = 3, records: int = 5) -> dict[str, Any]:
        self.asked.append((body, pages, records))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_the_test_button_fills_the_view_and_bounds_the_pages() -> None:
    from ui.jobs import EditorActions

    api = PreviewApi(ANSWER)
    out = asyncio.run(EditorActions(api).test("name: orders\n", 99))  # type: ignore[arg-type]
    assert api.asked == [("name: orders\n", 20, 5)]
    status, errors, summary, warnings, requests, sample, raw, columns, following = out
    assert status == "Tested job 'orders': see the test read below." and errors == []
    assert summary == pv.status_line(ANSWER) and warnings == pv.warnings_markdown(ANSWER)
    assert requests == pv.request_rows(ANSWER) and columns == pv.column_rows(ANSWER)
    assert list(sample.columns) == ["id", "amount"] and len(raw) == 2
    assert following.startswith("**Next request**")
    asyncio.run(EditorActions(api).test("", None))  # type: ignore[arg-type]
    assert api.asked[-1] == ("", 3, 5)


def test_the_test_button_shows_a_validation_error_like_validate() -> None:
    from ui.jobs import EditorActions

    error = JobValidationError("<yaml>", [("source.url", "required")], {"source.url": (3, 3)})
    out = asyncio.run(EditorActions(PreviewApi(error)).test("x: 1", 3))  # type: ignore[arg-type]
    assert out[0] == "Invalid job: 1 error(s), see the table."
    assert out[1] == [["source.url", "required"]]
    assert out[2].startswith("No test read") and out[4] == [] and out[5].empty
