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
    type: Literal["none"] = "none"


class BearerAuth(Strict):
    type: Literal["bearer"]
    token: str


class BasicAuth(Strict):
    type: Literal["basic"]
    username: str
    password: str


class ApiKeyAuth(Strict):
    type: Literal["api_key"]
    name: str
    value: str
    in_: Literal["header", "query"] = Field("header", alias="in")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class OAuth2ClientCredentials(Strict):
    type: Literal["oauth2_client_credentials"]
    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None
    # how the client authenticates to the token server: HTTP Basic, or client_id and
    # client_secret in the form (RFC 6749 §2.3.1)
    client_auth: Literal["basic", "post"] = "basic"
    audience: str | None = None
    extra: dict[str, str] | None = None  # more token request parameters (never override ours)


class OAuth2RefreshToken(Strict):
    """The refresh-token grant (RFC 6749 §6): a new access token from a long-lived refresh
    token; a refresh token the server rotates is used for the next renewals."""

    type: Literal["oauth2_refresh_token"]
    token_url: str
    client_id: str
    client_secret: str | None = None
    refresh_token: str
    scope: str | None = None
    client_auth: Literal["basic", "post"] = "basic"


class LoginAuth(Strict):
    """A login request (JSON `body` or `form`) whose answer holds a token at `token_path`,
    sent as `header: prefix + token`; renewed at `expires_in` (else the answer's own
    `expires_in`, else on a 401)."""

    type: Literal["login"]
    url: str
    method: Literal["POST", "PUT"] = "POST"
    body: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    token_path: JsonPath
    header: str = Field("Authorization", min_length=1)
    prefix: str = "Bearer "
    expires_in: Duration | None = None

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


class NoPaginate(Strict):
    type: Literal["none"] = "none"


class LinkHeaderPaginate(Strict):
    type: Literal["link_header"]


class NextUrlPaginate(Strict):
    type: Literal["next_url"]
    path: JsonPath = "$.next"
    # the next URL from this response header (e.g. Next-Page) instead of `path` in the body
    header: str | None = Field(None, min_length=1)


class PagePaginate(Strict):
    type: Literal["page"]
    param: str = "page"
    start: int = 1
    size_param: str | None = None
    size: int | None = Field(None, ge=1)
    # JSONPath to the total number of records: enables parallel fetch
    total_path: JsonPath | None = None
    has_more_path: JsonPath | None = None  # pagination ends when it holds false


class OffsetPaginate(Strict):
    type: Literal["offset"]
    param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(100, ge=1)
    total_path: JsonPath | None = None
    has_more_path: JsonPath | None = None  # pagination ends when it holds false


class CursorPaginate(Strict):
    type: Literal["cursor"]
    param: str = "cursor"
    path: JsonPath = "$.next_cursor"
    # the cursor goes into the JSON body at this dotted path (GraphQL: variables.after), not
    # into the query parameter `param`
    body_path: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
    )
    has_more_path: JsonPath | None = None  # pagination ends when it holds false


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
    cursor_field: str
    param: str
    initial: str | None = None
    lookback: Duration = timedelta(0)
    # the parameter a backfill sends the upper bound of its range in (`tg backfill --to`)
    until_param: str | None = None


ForEachValue = str | int | float | bool | None


class ForEach(Strict):
    """One request chain per row: of `sql` (read-only, over the data tables, run by the
    Database at the start of the run) or of `values`; see chains.py."""

    sql: str | None = None
    values: list[dict[str, ForEachValue]] | None = None
    include: list[str] = []  # columns of the row added to every record of its chain
    concurrency: int = Field(4, ge=1, le=64)  # rows read at once, all under rate_limit

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

    start: datetime
    step: Duration
    end: Literal["now"] | datetime = "now"
    lookback: Duration = timedelta(0)
    format: WindowFormat = WindowFormat.ISO

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

    status: int | list[int] = Field(union_mode="left_to_right")
    body_contains: str | None = Field(None, min_length=1)
    header: str | None = Field(None, min_length=1)  # `Name` present, or `Name: text` in it
    action: RuleAction

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
    per_second: float = Field(gt=0)


class ExpectTotalHeader(Strict):
    header: str = Field(min_length=1)  # e.g. X-Total-Count


class HttpSource(Strict):
    type: Literal["http"] = "http"
    url: str = Field(pattern=r"^https?://")
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, str | int | float | bool] = {}
    headers: dict[str, str] = {}
    body: Any = None
    auth: Auth = NoAuth()
    records: JsonPath = "$"  # json only: jsonl and csv bodies are rows as they are
    # the body: one JSON document, JSON lines, or CSV with a header row (gzip decoded either
    # way); csv types are inferred, or given here ({name: type} or names: sources/formats.py)
    format: Literal["json", "jsonl", "csv"] = "json"
    columns: dict[str, str] | list[str] | None = None
    paginate: Paginate = NoPaginate()
    incremental: Incremental | None = None
    for_each: ForEach | None = None
    window: Window | None = None
    rate_limit: RateLimit | None = None
    timeout: Duration = timedelta(seconds=30)
    max_pages: int | None = Field(None, ge=1)
    # a full read must fetch exactly this many records: a JSONPath into the first page, or
    # {header: X-Total-Count} (sources/totals.py)
    expect_total: JsonPath | ExpectTotalHeader | None = None
    # what a response means, first match wins, before the default handling (retry 408, 429
    # and 5xx; fail other errors)
    rules: list[Rule] = []
    # a response body past this fails the run (read as it streams in, so memory stays bounded)
    max_page_bytes: int = Field(256 * 1024 * 1024, ge=1)
    # each request: tries on connection errors, timeouts, 429 and 5xx before the attempt fails
    max_tries: int = Field(5, ge=1, le=50)
    backoff: Duration = timedelta(milliseconds=500)  # first retry delay, doubled each try, jittered
    max_backoff: Duration = timedelta(seconds=30)
    concurrency: int = Field(4, ge=1, le=32)  # pages fetched at once when addressable in advance
    # rows gathered from pages before they are staged with a checkpoint (or 1 s of pages):
    # bigger is faster, smaller re-fetches less when a failed run resumes
    checkpoint_rows: int = Field(50_000, ge=1)

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
