"""The `source` of a job file (CONTRACT §3, §7.1, §7.2) as pydantic models: auth,
pagination, incremental cursors, for_each rows and time windows, response rules, formats,
and `HttpSource`, which holds them. jobs.py re-exports every name here."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tg_actors.jobbase import Duration, JsonPath, Strict, is_input


class NoAuth(Strict):
    """No authentication: requests go out as the job writes them."""

    type: Literal["none"] = Field("none", description="The auth kind.", examples=["none"])


class BearerAuth(Strict):
    """`Authorization: Bearer <token>` on every request."""

    type: Literal["bearer"] = Field(description="The auth kind.", examples=["bearer"])
    token: str = Field(
        description="The bearer token; a `${NAME}` reference keeps it out of the file.",
        examples=["${GITHUB_TOKEN}"],
    )


class BasicAuth(Strict):
    """HTTP Basic authentication (RFC 7617)."""

    type: Literal["basic"] = Field(description="The auth kind.", examples=["basic"])
    username: str = Field(description="The user name.", examples=["${EXAMPLE_USER}"])
    password: str = Field(description="The password.", examples=["${EXAMPLE_PASSWORD}"])


class ApiKeyAuth(Strict):
    """A key sent as a header or a query parameter."""

    type: Literal["api_key"] = Field(description="The auth kind.", examples=["api_key"])
    name: str = Field(
        description="The header or query parameter that carries the key.",
        examples=["X-API-Key"],
    )
    value: str = Field(
        description="The key; a `${NAME}` may sit inside a longer value.",
        examples=["Token ${SHOP_TOKEN}"],
    )
    in_: Literal["header", "query"] = Field(
        "header",
        alias="in",
        description="Where the key goes: a request header or a query parameter.",
        examples=["query"],
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class OAuth2ClientCredentials(Strict):
    """The client-credentials grant (RFC 6749 §4.4): an access token from the token server,
    cached and renewed shortly before it expires."""

    type: Literal["oauth2_client_credentials"] = Field(
        description="The auth kind.", examples=["oauth2_client_credentials"]
    )
    token_url: str = Field(
        description="The token endpoint the grant is posted to.",
        examples=["https://auth.example.com/oauth/token"],
    )
    client_id: str = Field(description="The OAuth2 client id.", examples=["${EXAMPLE_CLIENT_ID}"])
    client_secret: str = Field(
        description="The OAuth2 client secret.", examples=["${EXAMPLE_CLIENT_SECRET}"]
    )
    scope: str | None = Field(
        None, description="The scope asked for (space-separated).", examples=["read:orders"]
    )
    # how the client authenticates to the token server: HTTP Basic, or client_id and
    # client_secret in the form (RFC 6749 §2.3.1)
    client_auth: Literal["basic", "post"] = Field(
        "basic",
        description="How the client authenticates to the token server: HTTP Basic, or"
        " client_id and client_secret in the form.",
        examples=["post"],
    )
    audience: str | None = Field(
        None,
        description="The `audience` parameter some token servers require.",
        examples=["https://api.example.com"],
    )
    extra: dict[str, str] | None = Field(
        None,
        description="More token request parameters (never overriding ours).",
        examples=[{"resource": "orders"}],
    )  # more token request parameters (never override ours)


class OAuth2RefreshToken(Strict):
    """The refresh-token grant (RFC 6749 §6): a new access token from a long-lived refresh
    token; a refresh token the server rotates is used for the next renewals."""

    type: Literal["oauth2_refresh_token"] = Field(
        description="The auth kind.", examples=["oauth2_refresh_token"]
    )
    token_url: str = Field(
        description="The token endpoint the refresh grant is posted to.",
        examples=["https://auth.example.com/oauth/token"],
    )
    client_id: str = Field(description="The OAuth2 client id.", examples=["${EXAMPLE_CLIENT_ID}"])
    client_secret: str | None = Field(
        None,
        description="The OAuth2 client secret, if the server wants one.",
        examples=["${EXAMPLE_CLIENT_SECRET}"],
    )
    refresh_token: str = Field(
        description="The long-lived refresh token (a rotated one is kept for later runs).",
        examples=["${EXAMPLE_REFRESH_TOKEN}"],
    )
    scope: str | None = Field(
        None, description="The scope asked for (space-separated).", examples=["read:orders"]
    )
    client_auth: Literal["basic", "post"] = Field(
        "basic",
        description="How the client authenticates to the token server: HTTP Basic, or"
        " client_id and client_secret in the form.",
        examples=["post"],
    )


class LoginAuth(Strict):
    """A login request (JSON `body` or `form`) whose answer holds a token at `token_path`,
    sent as `header: prefix + token`; renewed at `expires_in` (else the answer's own
    `expires_in`, else on a 401)."""

    type: Literal["login"] = Field(description="The auth kind.", examples=["login"])
    url: str = Field(description="The login endpoint.", examples=["https://api.example.com/login"])
    method: Literal["POST", "PUT"] = Field(
        "POST", description="The login request's HTTP method.", examples=["POST"]
    )
    body: dict[str, Any] | None = Field(
        None,
        description="A JSON body for the login request (not with `form`).",
        examples=[{"user": "${EXAMPLE_USER}", "password": "${EXAMPLE_PASSWORD}"}],
    )
    form: dict[str, str] | None = Field(
        None,
        description="A form body for the login request (not with `body`).",
        examples=[{"username": "${EXAMPLE_USER}", "password": "${EXAMPLE_PASSWORD}"}],
    )
    token_path: JsonPath = Field(
        description="JSONPath to the token in the login answer.", examples=["$.access_token"]
    )
    header: str = Field(
        "Authorization",
        min_length=1,
        description="The request header the token is sent in.",
        examples=["X-Auth-Token"],
    )
    prefix: str = Field(
        "Bearer ", description="Written before the token in that header.", examples=[""]
    )
    expires_in: Duration | None = Field(
        None,
        description="Renew the token after this long (absent: the answer's `expires_in`,"
        " else on a 401).",
        examples=["55m"],
    )

    @model_validator(mode="after")
    def _body_or_form(self) -> LoginAuth:
        if self.body is not None and self.form is not None:
            raise ValueError("give the login a JSON body or a form, not both")
        return self


Auth = Annotated[
    NoAuth
    | BearerAuth
    | BasicAuth
    | ApiKeyAuth
    | OAuth2ClientCredentials
    | OAuth2RefreshToken
    | LoginAuth,
    Field(discriminator="type"),
]


_HAS_MORE = "JSONPath to a flag in the body: pagination ends when it holds false."


class NoPaginate(Strict):
    """One request, one page."""

    type: Literal["none"] = Field("none", description="The pagination kind.", examples=["none"])


class LinkHeaderPaginate(Strict):
    """The next page's URL from the `Link: <...>; rel="next"` response header (RFC 8288)."""

    type: Literal["link_header"] = Field(
        description="The pagination kind.", examples=["link_header"]
    )


class NextUrlPaginate(Strict):
    """The next page's URL from the body (`path`) or a response header; a relative URL
    resolves against the request."""

    type: Literal["next_url"] = Field(description="The pagination kind.", examples=["next_url"])
    path: JsonPath = Field(
        "$.next",
        description="JSONPath to the next page's URL in the body.",
        examples=["$.links.next"],
    )
    # the next URL from this response header (e.g. Next-Page) instead of `path` in the body
    header: str | None = Field(
        None,
        min_length=1,
        description="Take the next URL from this response header instead of `path`.",
        examples=["Next-Page"],
    )


class PagePaginate(Strict):
    """Numbered pages: `param` counts up from `start`."""

    type: Literal["page"] = Field(description="The pagination kind.", examples=["page"])
    param: str = Field(
        "page", description="The query parameter holding the page number.", examples=["p"]
    )
    start: int = Field(1, description="The first page's number.", examples=[0])
    size_param: str | None = Field(
        None, description="The query parameter holding the page size.", examples=["per_page"]
    )
    size: int | None = Field(
        None, ge=1, description="The page size sent in `size_param`.", examples=[100]
    )
    # JSONPath to the total number of records: enables parallel fetch
    total_path: JsonPath | None = Field(
        None,
        description="JSONPath to the total number of records: ends the read there and"
        " enables parallel fetch.",
        examples=["$.total"],
    )
    has_more_path: JsonPath | None = Field(
        None, description=_HAS_MORE, examples=["$.has_more"]
    )  # pagination ends when it holds false


class OffsetPaginate(Strict):
    """Offset and limit: `param` grows by `limit` each page."""

    type: Literal["offset"] = Field(description="The pagination kind.", examples=["offset"])
    param: str = Field(
        "offset", description="The query parameter holding the offset.", examples=["skip"]
    )
    limit_param: str = Field(
        "limit", description="The query parameter holding the page size.", examples=["take"]
    )
    limit: int = Field(100, ge=1, description="Records asked for per page.", examples=[500])
    total_path: JsonPath | None = Field(
        None,
        description="JSONPath to the total number of records: ends the read there and"
        " enables parallel fetch.",
        examples=["$.total"],
    )
    has_more_path: JsonPath | None = Field(
        None, description=_HAS_MORE, examples=["$.has_more"]
    )  # pagination ends when it holds false


class CursorPaginate(Strict):
    """An opaque cursor from each page sent back for the next one."""

    type: Literal["cursor"] = Field(description="The pagination kind.", examples=["cursor"])
    param: str = Field(
        "cursor", description="The query parameter the cursor is sent in.", examples=["after"]
    )
    path: JsonPath = Field(
        "$.next_cursor",
        description="JSONPath to the next cursor in the body; none there ends the read.",
        examples=["$.meta.next_cursor"],
    )
    # the cursor goes into the JSON body at this dotted path (GraphQL: variables.after), not
    # into the query parameter `param`
    body_path: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="Put the cursor into the POST body at this dotted path instead of `param`.",
        examples=["variables.after"],
    )
    has_more_path: JsonPath | None = Field(
        None, description=_HAS_MORE, examples=["$.page_info.has_next_page"]
    )  # pagination ends when it holds false


Paginate = Annotated[
    NoPaginate
    | LinkHeaderPaginate
    | NextUrlPaginate
    | PagePaginate
    | OffsetPaginate
    | CursorPaginate,
    Field(discriminator="type"),
]


class Incremental(Strict):
    """Read only what is new: the largest `cursor_field` seen is committed with the rows and
    sent in `param` on the next run."""

    cursor_field: str = Field(
        description="The record field whose largest value is the cursor.",
        examples=["updated_at"],
    )
    param: str = Field(description="The query parameter the cursor is sent in.", examples=["since"])
    initial: str | None = Field(
        None,
        description="The cursor of the first run (absent: no filter the first time).",
        examples=["2024-01-01T00:00:00Z"],
    )
    lookback: Duration = Field(
        timedelta(0),
        description="Ask for this much before the cursor (a time cursor), for late rows.",
        examples=["1h"],
    )
    # the parameter a backfill sends the upper bound of its range in (`tg backfill --to`)
    until_param: str | None = Field(
        None,
        description="The query parameter a backfill sends the end of its range in.",
        examples=["until"],
    )


ForEachValue = str | int | float | bool | None


class ForEach(Strict):
    """One request chain per row: of `sql` (read-only, over the data tables, run by the
    Database at the start of the run) or of `values`; see chains.py."""

    sql: str | None = Field(
        None,
        description="One read-only query over the data tables; one request chain per row.",
        examples=["SELECT id AS customer_id FROM demo_customers"],
    )
    values: list[dict[str, ForEachValue]] | None = Field(
        None,
        description="Fixed rows instead of `sql`; every row has the same columns.",
        examples=[[{"region": "eu"}, {"region": "us"}]],
    )
    include: list[str] = Field(
        [],
        description="Columns of the row added to every record of its chain.",
        examples=[["customer_id"]],
    )  # columns of the row added to every record of its chain
    concurrency: int = Field(
        4, ge=1, le=64, description="Rows read at once, all under `rate_limit`.", examples=[8]
    )  # rows read at once, all under rate_limit

    @field_validator("sql")
    @classmethod
    def _read_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not is_input(info):
            return value
        from tg_actors.queries import sql_problem  # DuckDB's parser, as for transform.sql

        problem = sql_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ForEach:
        if (self.sql is None) == (self.values is None):
            raise ValueError("give exactly one of sql or values")
        if self.values:
            first = set(self.values[0])
            for i, row in enumerate(self.values[1:], 1):
                if set(row) != first:
                    raise ValueError(
                        f"values[{i}] has the columns {sorted(row)}, values[0] {sorted(first)}:"
                        " every row needs the same columns"
                    )
        return self

    def columns(self) -> list[str] | None:
        """The rows' column names, when known before the run (None: `SELECT *` and such)."""
        if self.values is not None:
            return list(self.values[0]) if self.values else None  # no rows: nothing to check
        from tg_actors.queries import select_names

        return select_names(self.sql or "")


class WindowFormat(enum.StrEnum):
    ISO = "iso"  # 2024-01-01T00:00:00Z
    DATE = "date"  # 2024-01-01
    EPOCH = "epoch"  # seconds
    EPOCH_MS = "epoch_ms"


class Window(Strict):
    """Time slices [start, start+step), ... up to `end` (the last one clamped); a later run
    continues where the last completed window ended, `lookback` earlier."""

    start: datetime = Field(
        description="The first window's start (naive: UTC).", examples=["2024-01-01T00:00:00Z"]
    )
    step: Duration = Field(description="The length of one window (at least 1s).", examples=["1d"])
    end: Literal["now"] | datetime = Field(
        "now",
        description="Where the last window ends (clamped): `now` or a datetime.",
        examples=["2024-12-31T00:00:00Z"],
    )
    lookback: Duration = Field(
        timedelta(0),
        description="A later run starts this much before where the last one ended.",
        examples=["1d"],
    )
    format: WindowFormat = Field(
        WindowFormat.ISO,
        description="How `{window_start}` and `{window_end}` are written into the request.",
        examples=["date"],
    )

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: Any) -> Any:
        if isinstance(value, datetime) and value.tzinfo is None:  # naive means UTC, as `at`
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("step")
    @classmethod
    def _step(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("step must be at least 1s")
        return value

    @model_validator(mode="after")
    def _ends_after_start(self) -> Window:
        if isinstance(self.end, datetime) and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class RuleAction(enum.StrEnum):
    RETRY = "retry"  # as a 429 or 5xx: the request's retry policy (max_tries, backoff)
    SKIP = "skip"  # no records from this response; its chain (a for_each row) ends there
    STOP = "stop"  # pagination ends here, the run goes on to its commit
    FAIL = "fail"  # the run fails now, and is not retried


class Rule(Strict):
    """A response rule (sources/rules.py): the first that matches a response decides."""

    status: int | list[int] = Field(
        union_mode="left_to_right",
        description="The HTTP status (100-599), or a list of them, the rule matches.",
        examples=[404, [401, 403]],
    )
    body_contains: str | None = Field(
        None,
        min_length=1,
        description="Matches only when the body contains this text.",
        examples=["rate limit"],
    )
    header: str | None = Field(
        None,
        min_length=1,
        description="Matches only when this header is present (`Name`) or holds text"
        " (`Name: text`).",
        examples=["X-Error: quota"],
    )  # `Name` present, or `Name: text` in it
    action: RuleAction = Field(
        description="What a matching response does: retry, skip, stop or fail.",
        examples=["skip"],
    )

    @field_validator("status")
    @classmethod
    def _statuses(cls, value: int | list[int]) -> int | list[int]:
        codes = value if isinstance(value, list) else [value]
        if not codes or any(not 100 <= code <= 599 for code in codes):
            raise ValueError("status must be an HTTP status (100-599) or a list of them")
        return value

    @model_validator(mode="after")
    def _not_every_success(self) -> Rule:
        codes = self.status if isinstance(self.status, list) else [self.status]
        quiet = self.body_contains is None and self.header is None
        if quiet and self.action in (RuleAction.SKIP, RuleAction.STOP):
            if any(200 <= code < 300 for code in codes):
                raise ValueError(
                    f"a {self.action} rule on a 2xx status needs body_contains or header:"
                    " it would drop every successful page"
                )
        return self

    @property
    def codes(self) -> frozenset[int]:
        return frozenset(self.status if isinstance(self.status, list) else [self.status])


class RateLimit(Strict):
    """A request rate held across every engine running the job."""

    per_second: float = Field(
        gt=0, description="Requests per second at most (fractions allowed).", examples=[5, 0.5]
    )


class ExpectTotalHeader(Strict):
    """The number of records a full read must fetch, from a response header."""

    header: str = Field(
        min_length=1,
        description="The response header of the first page holding the total.",
        examples=["X-Total-Count"],
    )  # e.g. X-Total-Count


class HttpSource(Strict):
    """The HTTP API a job reads: the request, its auth and pagination, and how a response
    becomes records."""

    type: Literal["http"] = Field("http", description="The source kind.", examples=["http"])
    url: str = Field(
        pattern=r"^https?://",
        description="The first request's URL; `{column}` takes a for_each row's value.",
        examples=["https://api.example.com/v1/orders"],
    )
    method: Literal["GET", "POST"] = Field(
        "GET", description="The HTTP method (any case).", examples=["POST"]
    )
    params: dict[str, str | int | float | bool] = Field(
        {}, description="Query parameters sent with every request.", examples=[{"per_page": 500}]
    )
    headers: dict[str, str] = Field(
        {},
        description="Request headers sent with every request.",
        examples=[{"Accept": "application/json"}],
    )
    body: Any = Field(
        None,
        description="A JSON body sent with every request (POST).",
        examples=[{"query": "{ items { id } }"}],
    )
    auth: Auth = Field(
        NoAuth(),
        description="How requests authenticate, by `type`.",
        examples=[{"type": "bearer", "token": "${GITHUB_TOKEN}"}],
    )
    records: JsonPath = Field(
        "$",
        description="JSONPath to the list of records in a JSON body (json only).",
        examples=["$.data"],
    )  # json only: jsonl and csv bodies are rows as they are
    # the body: one JSON document, JSON lines, or CSV with a header row (gzip decoded either
    # way); csv types are inferred, or given here ({name: type} or names: sources/formats.py)
    format: Literal["json", "jsonl", "csv"] = Field(
        "json",
        description="The body: one JSON document, JSON lines, or CSV with a header row.",
        examples=["jsonl"],
    )
    columns: dict[str, str] | list[str] | None = Field(
        None,
        description="csv only: column types ({name: DuckDB or Arrow type}) or the names to"
        " read; absent: inferred.",
        examples=[{"id": "BIGINT", "amount": "DOUBLE"}, ["id", "amount"]],
    )
    paginate: Paginate = Field(
        NoPaginate(),
        description="How the next page is asked for, by `type`.",
        examples=[{"type": "page", "param": "page", "start": 1}],
    )
    incremental: Incremental | None = Field(
        None,
        description="Read only records past the last run's cursor.",
        examples=[{"cursor_field": "updated_at", "param": "since"}],
    )
    for_each: ForEach | None = Field(
        None,
        description="One request chain per row of a query or a list of values.",
        examples=[{"sql": "SELECT id AS customer_id FROM demo_customers"}],
    )
    window: Window | None = Field(
        None,
        description="One request chain per time slice, continued by the next run.",
        examples=[{"start": "2024-01-01T00:00:00Z", "step": "7d"}],
    )
    rate_limit: RateLimit | None = Field(
        None,
        description="Requests per second at most, across every engine.",
        examples=[{"per_second": 5}],
    )
    timeout: Duration = Field(
        timedelta(seconds=30), description="Timeout of one request.", examples=["10s"]
    )
    max_pages: int | None = Field(
        None, ge=1, description="Pages one run reads at most.", examples=[1000]
    )
    # a full read must fetch exactly this many records: a JSONPath into the first page, or
    # {header: X-Total-Count} (sources/totals.py)
    expect_total: JsonPath | ExpectTotalHeader | None = Field(
        None,
        description="The record count a full read must fetch: a JSONPath into the first page"
        " or {header: NAME}.",
        examples=["$.total", {"header": "X-Total-Count"}],
    )
    # what a response means, first match wins, before the default handling (retry 408, 429
    # and 5xx; fail other errors)
    rules: list[Rule] = Field(
        [],
        description="What a response means; the first match wins, before the default handling.",
        examples=[[{"status": 404, "action": "skip"}]],
    )
    # a response body past this fails the run (read as it streams in, so memory stays bounded)
    max_page_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1,
        description="A response body larger than this many bytes fails the run.",
        examples=[67108864],
    )
    # each request: tries on connection errors, timeouts, 429 and 5xx before the attempt fails
    max_tries: int = Field(
        5,
        ge=1,
        le=50,
        description="Tries of one request on connection errors, timeouts, 408, 429 and 5xx.",
        examples=[8],
    )
    backoff: Duration = Field(
        timedelta(milliseconds=500),
        description="The first retry's delay, doubled each try, jittered.",
        examples=["1s"],
    )  # first retry delay, doubled each try, jittered
    max_backoff: Duration = Field(
        timedelta(seconds=30), description="The longest delay between tries.", examples=["1m"]
    )
    concurrency: int = Field(
        4,
        ge=1,
        le=32,
        description="Pages fetched at once when they are addressable in advance.",
        examples=[8],
    )  # pages fetched at once when addressable in advance
    # rows gathered from pages before they are staged with a checkpoint (or 1 s of pages):
    # bigger is faster, smaller re-fetches less when a failed run resumes
    checkpoint_rows: int = Field(
        50_000,
        ge=1,
        description="Rows gathered before they are staged with a checkpoint (or 1s of pages).",
        examples=[10000],
    )

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _body_cursor_needs_a_body(self) -> HttpSource:
        paginate = self.paginate
        if not isinstance(paginate, CursorPaginate) or not paginate.body_path:
            return self
        problem = None
        if self.method != "POST":
            problem = "puts the cursor into a JSON body: method must be POST"
        elif not (self.body is None or isinstance(self.body, dict)):
            problem = "needs a JSON object body (or none)"
        if problem is not None:
            error = PydanticCustomError("body_path", problem)
            loc = ("paginate", "body_path")
            detail = InitErrorDetails(type=error, loc=loc, input=paginate.body_path)
            raise ValidationError.from_exception_data("HttpSource", [detail])
        return self

    @model_validator(mode="after")
    def _records_path_is_json_only(self) -> HttpSource:
        problem = None
        if self.format != "json" and self.records != "$":
            problem = ("records", f"is a JSONPath into a JSON body: format {self.format} has none")
        elif self.format != "csv" and self.columns is not None:
            problem = ("columns", f"are the columns of a csv body, not of format {self.format}")
        elif self.format != "json":
            problem = self._body_path_without_json()
        if problem is None:
            return self
        name, text = problem
        error = PydanticCustomError(name.replace(".", "_"), text)
        loc = tuple(name.split("."))
        detail = InitErrorDetails(type=error, loc=loc, input=self.format)
        raise ValidationError.from_exception_data("HttpSource", [detail])

    def _body_path_without_json(self) -> tuple[str, str] | None:
        """A JSONPath into the body (pagination, has_more, expect_total) where the body is
        jsonl or csv, not one JSON document: it could never be read."""
        why = f"is a JSONPath into a JSON body: format {self.format} has none"
        paginate = self.paginate
        if isinstance(paginate, CursorPaginate):
            return ("paginate.path", f"{why} (a cursor needs a JSON body)")
        if isinstance(paginate, NextUrlPaginate) and paginate.header is None:
            return ("paginate.path", f"{why}: take the next URL from a header (header: ...)")
        for field in ("total_path", "has_more_path"):
            if getattr(paginate, field, None) is not None:
                return (f"paginate.{field}", why)
        if isinstance(self.expect_total, str):
            return ("expect_total", f"{why}: count from a header ({{header: X-Total-Count}})")
        return None
