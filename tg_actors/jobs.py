"""JobSpec: the job file of CONTRACT §3 as pydantic models.

Normalised at the edge (durations become timedelta, policies become enums); everything past
`JobSpec.model_validate` can trust its types. Unknown keys are errors. Strings holding `${NAME}`
are secrets: kept as the reference, resolved only for a run, shown as `***` to humans.
"""

from __future__ import annotations

import enum
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tg_actors.durations import format_duration, parse_duration
from tg_actors.errors import JobValidationError, SourceError
from tg_actors.redaction import mask_value

JOB_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"

MAX_DURATION = timedelta(days=3650)  # past this, schedule arithmetic leaves datetime's range
# parse_job's validation context: the checks added for what comes in (API, UI, files) apply;
# a spec read back from the database (validated without it) is not refused after the fact, so
# a job stored before a check existed still loads (the run's sandbox still guards it)
INPUT = {"tg_input": True}


def _is_input(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("tg_input"))


def _duration(value: Any, info: ValidationInfo) -> timedelta:
    """parse_duration, bounded: a value too large for timedelta (or for the schedule's
    datetimes later) is a validation error naming the field, never an OverflowError (500)."""
    if not isinstance(value, str | int | float | timedelta):
        raise ValueError("a duration must be like 30s, 5m, 2h or 1d, or a number of seconds")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a duration must be a finite number of seconds or like 30s, 5m, 2h, 1d")
    too_long = f"a duration must be at most {format_duration(MAX_DURATION)}"
    try:
        delta = parse_duration(value)
    except OverflowError:  # past timedelta's own range
        raise ValueError(too_long) from None
    if delta > MAX_DURATION and _is_input(info):
        raise ValueError(too_long)
    return delta


def _jsonpath(value: str, info: ValidationInfo) -> str:
    """A JSONPath the run will be able to use: checked when the job is validated, so a typo
    is a 422 naming the field, not a failed run later."""
    if not _is_input(info):
        return value
    from tg_actors.records import compile_path

    try:
        compile_path(value)
    except SourceError as exc:
        raise ValueError(str(exc)) from None
    except Exception as exc:  # the JSONPath library raises several kinds of its own
        raise ValueError(f"invalid JSONPath {value!r}: {exc}") from None
    return value


JsonPath = Annotated[str, AfterValidator(_jsonpath)]

Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ms|s|m|h|d))+\s*$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "30s, 5m, 2h, 1d, 1h30m, 250ms, or a number of seconds",
        }
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def __repr__(self) -> str:  # never leak a resolved or referenced secret in a repr
        fields = ", ".join(f"{k}={v!r}" for k, v in mask_value(self.model_dump()).items())
        return f"{type(self).__name__}({fields})"

    __str__ = __repr__


class Catchup(enum.StrEnum):
    """What to do with schedule ticks missed while turbo-giggle was down."""

    NONE = "none"  # skip them; wait for the next tick
    LATEST = "latest"  # run the most recent missed tick once
    ALL = "all"  # run every missed tick (bounded)


class Overlap(enum.StrEnum):
    """What a tick does while a run of the same job is still active."""

    SKIP = "skip"  # record a `skipped` run
    QUEUE = "queue"  # wait until the active run ends
    ALLOW = "allow"  # run alongside (still capped by max_active_runs)


# a destination table name: letters, digits and _, not starting with a digit, at most 63
TABLE_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
TABLE_NAME = re.compile(TABLE_NAME_PATTERN)


class WriteMode(enum.StrEnum):
    APPEND = "append"  # insert the run's rows
    REPLACE = "replace"  # the table becomes exactly the run's rows
    MERGE = "merge"  # upsert on primary_key


class ExportFormat(enum.StrEnum):
    """A file of the whole table the Database rewrites after each commit of it (store/export.py)."""

    PARQUET = "parquet"  # <data dir>/exports/<table>.parquet, written aside and renamed


class Schedule(Strict):
    cron: str | None = None
    interval: Duration | None = None
    anchor: datetime | None = None  # interval ticks sit at anchor + k * interval (default: epoch)
    at: datetime | None = None
    timezone: str = "UTC"
    catchup: Catchup = Catchup.LATEST
    overlap: Overlap = Overlap.SKIP
    jitter: Duration = timedelta(0)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and (
            len(value.split()) not in (5, 6)
            or not croniter.is_valid(value, second_at_beginning=True)
        ):
            raise ValueError(
                f"invalid cron expression {value!r} (5 fields, or 6 with seconds first)"
            )
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(seconds=0.1):
            raise ValueError("interval must be at least 100ms")
        return value

    @field_validator("anchor")
    @classmethod
    def _anchor(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        # `interval` is declared before `anchor`, so it is in info.data unless it failed itself
        if value is not None and "interval" in info.data and info.data["interval"] is None:
            raise ValueError("anchor applies to interval schedules only")
        if value is not None and value.tzinfo is None:  # read like `at`: naive means UTC
            value = value.replace(tzinfo=UTC)
        return value

    @field_validator("at")
    @classmethod
    def _at(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long
            raise ValueError(f"unknown IANA timezone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        kinds = [k for k in ("cron", "interval", "at") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of cron, interval or at")
        return self


class Triggers(Strict):
    after: list[Annotated[str, Field(pattern=JOB_NAME_PATTERN)]] = []


class Retries(Strict):
    max_attempts: int = Field(1, ge=1, le=100)
    backoff: Duration = timedelta(seconds=2)
    max_backoff: Duration = timedelta(minutes=5)


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
        if value is None or not _is_input(info):
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


class Transform(Strict):
    sql: str = Field(min_length=1)

    @field_validator("sql")
    @classmethod
    def _read_only_select(cls, value: str, info: ValidationInfo) -> str:
        # one read-only SELECT over `records`, decided by DuckDB's parser: no ATTACH, COPY,
        # INSTALL, writes, PRAGMA, SET, file reads or second statement ever reaches a run.
        # Imported here: the job model loads no DuckDB until a transform is checked
        if not _is_input(info):
            return value
        from tg_actors.transform import transform_sql_problem

        problem = transform_sql_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class Destination(Strict):
    table: str = Field(pattern=rf"^{TABLE_NAME_PATTERN}$")
    write: WriteMode = WriteMode.APPEND
    primary_key: list[str] = []
    # a column whose type changes incompatibly (e.g. BIGINT then VARCHAR) fails the run unless
    # this is set: then the column becomes VARCHAR
    widen_to_varchar: bool = False
    export: ExportFormat | None = None  # absent: no export file

    @model_validator(mode="after")
    def _merge_needs_key(self) -> Destination:
        if self.write is WriteMode.MERGE and not self.primary_key:
            raise ValueError("primary_key is required when write is merge")
        return self


class JobSpec(Strict):
    name: str = Field(pattern=JOB_NAME_PATTERN)
    description: str = ""
    enabled: bool = True
    schedule: Schedule | None = None
    triggers: Triggers = Triggers()
    priority: int = Field(50, ge=0, le=100)
    max_active_runs: int = Field(1, ge=1)
    timeout: Duration = timedelta(minutes=30)
    retries: Retries = Retries()
    source: HttpSource
    transform: Transform | None = None
    destination: Destination

    @model_validator(mode="after")
    def _known_placeholders(self, info: ValidationInfo) -> JobSpec:
        """With for_each or window, each `{name}` of the request and each `include` must be a
        column of the rows or a window bound (when the rows' columns are known here; else the
        run checks them against the rows it gets)."""
        source = self.source
        if not _is_input(info) or (source.for_each is None and source.window is None):
            return self
        from tg_actors.chains import WINDOW_NAMES, source_placeholders

        columns = source.for_each.columns() if source.for_each is not None else []
        if columns is None:
            return self
        known = set(columns) | (set(WINDOW_NAMES) if source.window is not None else set())
        shown = ", ".join("{" + n + "}" for n in sorted(known)) or "none"
        details = []
        stored = source.model_dump(mode="json", by_alias=True)
        for path, name in source_placeholders(stored):
            if name not in known:
                message = f"unknown placeholder {{{name}}}; the request can use {shown}"
                error = PydanticCustomError("placeholder", message)
                details.append(InitErrorDetails(type=error, loc=("source", *path), input=name))
        if source.for_each is not None:
            for i, column in enumerate(source.for_each.include):
                if column not in columns:
                    message = (
                        f"{column!r} is not a column of the for_each rows ({', '.join(columns)})"
                    )
                    error = PydanticCustomError("include", message)
                    loc = ("source", "for_each", "include", i)
                    details.append(InitErrorDetails(type=error, loc=loc, input=column))
        if details:
            raise ValidationError.from_exception_data("JobSpec", details)
        return self

    @model_validator(mode="after")
    def _not_after_itself(self, info: ValidationInfo) -> JobSpec:
        # it would run back to back forever (cycles across jobs: ConfigManager, config_files)
        if _is_input(info) and self.name in self.triggers.after:
            i = self.triggers.after.index(self.name)
            message = f"a job cannot run after itself ({self.name!r})"
            error = PydanticCustomError("after_itself", message)
            detail = InitErrorDetails(type=error, loc=("triggers", "after", i), input=self.name)
            raise ValidationError.from_exception_data("JobSpec", [detail])
        return self

    def to_public(self) -> dict[str, Any]:
        """JSON-ready dict for humans (API, UI, logs): secrets shown as `***`."""
        return mask_value(self.to_stored())  # type: ignore[no-any-return]

    def to_stored(self) -> dict[str, Any]:
        """JSON-ready dict for the database: `${NAME}` references kept, never resolved values."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


MAX_DEPTH = 64  # nesting of a job's values (a POST body is the deepest part of a sane job)
MAX_VALUES = 100_000  # values in a job, counted as expanded (YAML aliases share, but count)


def check_shape(data: Any, source: str = "<job>") -> None:
    """Refuse a job too deep or too big to handle before anything walks it recursively:
    deep nesting would exhaust the stack or the serializer (a 500, not a 422), and a few
    hundred bytes of YAML aliases ("billion laughs") expand to gigabytes. Iterative, and it
    stops at the budget, so a cycle or a bomb costs at most MAX_VALUES steps."""
    left = MAX_VALUES
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        left -= 1
        if left < 0:
            message = f"the job holds more than {MAX_VALUES} values (YAML aliases expanding?)"
            raise JobValidationError(source, [("", message)])
        if len(path) > MAX_DEPTH:
            where = ".".join(path[:2])
            raise JobValidationError(source, [(where, f"nested deeper than {MAX_DEPTH} levels")])
        if isinstance(value, dict):
            stack.extend((v, (*path, str(k))) for k, v in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((v, (*path, str(i))) for i, v in enumerate(value))


def parse_job(data: Any, source: str = "<job>") -> JobSpec:
    """Validate a job dict; raise JobValidationError with (field.path, message) pairs."""
    if not isinstance(data, dict):
        raise JobValidationError(source, [("", "a job must be a mapping of fields")])
    check_shape(data, source)
    try:
        return JobSpec.model_validate(data, context=INPUT)
    except ValidationError as exc:
        raise JobValidationError(source, validation_errors(exc)) from None
    except (TypeError, AttributeError, LookupError, OverflowError, OSError, RecursionError) as exc:
        # a validator that met input it did not expect: still the job's fault, never a 500
        raise JobValidationError(source, [("", f"invalid job: {exc}")]) from None


def schedule_part(stored: dict[str, Any]) -> tuple[Any, ...]:
    """What decides when a stored job fires: a change of it restarts the count from now (the
    store's schedule_from, the Scheduler's watermark), so an edit never replays the window
    before it."""
    return (stored.get("schedule"), stored.get("enabled", True), stored.get("triggers"))


def validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """pydantic errors as (dotted.path, message); discriminator tags left out of the path."""
    out = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        # pydantic puts the union tag in the path (source.auth.bearer.token): drop it
        loc = [
            p
            for i, p in enumerate(loc)
            if not (i > 0 and loc[i - 1] in _UNION_FIELDS and p in _TAGS)
        ]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append((".".join(loc), msg))
    return out


_UNION_FIELDS = {"auth", "paginate"}
_TAGS = {
    "none",
    "bearer",
    "basic",
    "api_key",
    "oauth2_client_credentials",
    "oauth2_refresh_token",
    "login",
    "link_header",
    "next_url",
    "page",
    "offset",
    "cursor",
}
