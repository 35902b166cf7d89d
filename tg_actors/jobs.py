"""JobSpec: the job file of CONTRACT §3 as pydantic models.

Normalised at the edge (durations become timedelta, policies become enums); everything past
`JobSpec.model_validate` can trust its types. Unknown keys are errors. Strings holding `${NAME}`
are secrets: kept as the reference, resolved only for a run, shown as `***` to humans.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tg_actors.core.durations import format_duration, parse_duration
from tg_actors.core.redaction import mask_value
from tg_actors.errors import JobValidationError

JOB_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
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


class WriteMode(enum.StrEnum):
    APPEND = "append"  # insert the run's rows
    REPLACE = "replace"  # the table becomes exactly the run's rows
    MERGE = "merge"  # upsert on primary_key


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
        except (ZoneInfoNotFoundError, ValueError):
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


Auth = Annotated[
    NoAuth | BearerAuth | BasicAuth | ApiKeyAuth | OAuth2ClientCredentials,
    Field(discriminator="type"),
]


class NoPaginate(Strict):
    type: Literal["none"] = "none"


class LinkHeaderPaginate(Strict):
    type: Literal["link_header"]


class NextUrlPaginate(Strict):
    type: Literal["next_url"]
    path: str = "$.next"


class PagePaginate(Strict):
    type: Literal["page"]
    param: str = "page"
    start: int = 1
    size_param: str | None = None
    size: int | None = Field(None, ge=1)
    total_path: str | None = None  # JSONPath to the total number of records: enables parallel fetch


class OffsetPaginate(Strict):
    type: Literal["offset"]
    param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(100, ge=1)
    total_path: str | None = None


class CursorPaginate(Strict):
    type: Literal["cursor"]
    param: str = "cursor"
    path: str = "$.next_cursor"


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


class RateLimit(Strict):
    per_second: float = Field(gt=0)


class HttpSource(Strict):
    type: Literal["http"] = "http"
    url: str = Field(pattern=r"^https?://")
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, str | int | float | bool] = {}
    headers: dict[str, str] = {}
    body: Any = None
    auth: Auth = NoAuth()
    records: str = "$"
    paginate: Paginate = NoPaginate()
    incremental: Incremental | None = None
    rate_limit: RateLimit | None = None
    timeout: Duration = timedelta(seconds=30)
    max_pages: int | None = Field(None, ge=1)
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


class Transform(Strict):
    sql: str = Field(min_length=1)


class Destination(Strict):
    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    write: WriteMode = WriteMode.APPEND
    primary_key: list[str] = []
    # a column whose type changes incompatibly (e.g. BIGINT then VARCHAR) fails the run unless
    # this is set: then the column becomes VARCHAR
    widen_to_varchar: bool = False

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

    def to_public(self) -> dict[str, Any]:
        """JSON-ready dict for humans (API, UI, logs): secrets shown as `***`."""
        return mask_value(self.to_stored())  # type: ignore[no-any-return]

    def to_stored(self) -> dict[str, Any]:
        """JSON-ready dict for the database: `${NAME}` references kept, never resolved values."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def parse_job(data: Any, source: str = "<job>") -> JobSpec:
    """Validate a job dict; raise JobValidationError with (field.path, message) pairs."""
    if not isinstance(data, dict):
        raise JobValidationError(source, [("", "a job must be a mapping of fields")])
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise JobValidationError(source, validation_errors(exc)) from None


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
    "link_header",
    "next_url",
    "page",
    "offset",
    "cursor",
}
