"""JobSpec: the job file of CONTRACT §3 as pydantic models.

Normalised at the edge (durations become timedelta, policies become enums); everything past
`JobSpec.model_validate` can trust its types. Unknown keys are errors. Strings holding `${NAME}`
are secrets: kept as the reference, resolved only for a run, shown as `***` to humans.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tg_actors.errors import JobValidationError
from tg_actors.jobbase import INPUT, MAX_DURATION, Duration, JsonPath, Strict, is_input
from tg_actors.jobsource import (
    ApiKeyAuth,
    Auth,
    BasicAuth,
    BearerAuth,
    CursorPaginate,
    ExpectTotalHeader,
    ForEach,
    ForEachValue,
    HttpSource,
    Incremental,
    LinkHeaderPaginate,
    LoginAuth,
    NextUrlPaginate,
    NoAuth,
    NoPaginate,
    OAuth2ClientCredentials,
    OAuth2RefreshToken,
    OffsetPaginate,
    PagePaginate,
    Paginate,
    RateLimit,
    Rule,
    RuleAction,
    Window,
    WindowFormat,
)
from tg_actors.jobtrust import (
    AcceptedValuesCheck,
    AlertOn,
    Alerts,
    AnyCheck,
    Check,
    FreshnessCheck,
    NotNullCheck,
    OnFail,
    Over,
    RowCountCheck,
    SchemaContract,
    SqlCheck,
    UniqueCheck,
    unique_check_names,
)
from tg_actors.redaction import mask_value

# the source models (jobsource.py) and the building blocks (jobbase.py), re-exported: callers
# import every job model from here
__all__ = [
    "AcceptedValuesCheck",
    "AlertOn",
    "Alerts",
    "AnyCheck",
    "Check",
    "FreshnessCheck",
    "NotNullCheck",
    "OnFail",
    "Over",
    "RowCountCheck",
    "SchemaContract",
    "SqlCheck",
    "UniqueCheck",
    "ApiKeyAuth",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "CursorPaginate",
    "Duration",
    "ExpectTotalHeader",
    "ForEach",
    "ForEachValue",
    "HttpSource",
    "INPUT",
    "Incremental",
    "JsonPath",
    "LinkHeaderPaginate",
    "LoginAuth",
    "MAX_DURATION",
    "NextUrlPaginate",
    "NoAuth",
    "NoPaginate",
    "OAuth2ClientCredentials",
    "OAuth2RefreshToken",
    "OffsetPaginate",
    "PagePaginate",
    "Paginate",
    "RateLimit",
    "Rule",
    "RuleAction",
    "Strict",
    "Window",
    "WindowFormat",
    "is_input",
]

JOB_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


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
    """How a run's rows land in the table."""

    APPEND = "append"  # insert the run's rows
    REPLACE = "replace"  # the table becomes exactly the run's rows
    MERGE = "merge"  # upsert on primary_key


class ExportFormat(enum.StrEnum):
    """A file of the whole table the Database rewrites after each commit of it (store/export.py)."""

    PARQUET = "parquet"  # <data dir>/exports/<table>.parquet, written aside and renamed


class Schedule(Strict):
    """When the job runs by itself: exactly one of `cron`, `interval` or `at`."""

    cron: str | None = Field(
        None,
        description="A cron expression (5 fields, or 6 with seconds first) in `timezone`.",
        examples=["*/15 * * * *"],
    )
    interval: Duration | None = Field(
        None,
        description="Run every this long (at least 100ms), at anchor + k * interval.",
        examples=["30s"],
    )
    anchor: datetime | None = Field(
        None,
        description="interval only: ticks sit at anchor + k * interval (naive: UTC; default"
        " the epoch).",
        examples=["2026-01-01T00:00:07Z"],
    )  # interval ticks sit at anchor + k * interval (default: epoch)
    at: datetime | None = Field(
        None, description="Run once at this time (naive: UTC).", examples=["2026-12-01T00:00:00Z"]
    )
    timezone: str = Field(
        "UTC", description="The IANA timezone `cron` is read in.", examples=["Europe/Berlin"]
    )
    catchup: Catchup = Field(
        Catchup.LATEST,
        description="Ticks missed while down: none, the latest once, or all.",
        examples=["none"],
    )
    overlap: Overlap = Field(
        Overlap.SKIP,
        description="A tick while a run is still active: skip it, queue it, or allow it.",
        examples=["queue"],
    )
    jitter: Duration = Field(
        timedelta(0), description="Delay each tick's start by up to this much.", examples=["10s"]
    )

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
    """Runs started by other jobs."""

    after: list[Annotated[str, Field(pattern=JOB_NAME_PATTERN)]] = Field(
        [],
        description="Run when one of these jobs succeeds (never itself, no cycles).",
        examples=[["demo_customers"]],
    )


class Retries(Strict):
    """Attempts of a failed run (a new attempt resumes after the last staged page)."""

    max_attempts: int = Field(
        1, ge=1, le=100, description="Attempts of a run at most, the first included.", examples=[3]
    )
    backoff: Duration = Field(
        timedelta(seconds=2),
        description="The delay before the second attempt, doubled each attempt.",
        examples=["10s"],
    )
    max_backoff: Duration = Field(
        timedelta(minutes=5), description="The longest delay between attempts.", examples=["1h"]
    )


class Transform(Strict):
    """SQL run in DuckDB over each page's records before they are staged."""

    sql: str = Field(
        min_length=1,
        description="One read-only SELECT over the relation `records`.",
        examples=["SELECT id, amount::DOUBLE AS amount FROM records WHERE status = 'paid'"],
    )

    @field_validator("sql")
    @classmethod
    def _read_only_select(cls, value: str, info: ValidationInfo) -> str:
        # one read-only SELECT over `records`, decided by DuckDB's parser: no ATTACH, COPY,
        # INSTALL, writes, PRAGMA, SET, file reads or second statement ever reaches a run.
        # Imported here: the job model loads no DuckDB until a transform is checked
        if not is_input(info):
            return value
        from tg_actors.transform import transform_sql_problem

        problem = transform_sql_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class Destination(Strict):
    """The DuckDB table the records land in."""

    table: str = Field(
        pattern=rf"^{TABLE_NAME_PATTERN}$",
        description="The table's name: letters, digits and _, at most 63.",
        examples=["orders"],
    )
    write: WriteMode = Field(
        WriteMode.APPEND,
        description="append rows, replace the table, or merge (upsert) on primary_key.",
        examples=["merge"],
    )
    primary_key: list[str] = Field([], description="The key columns of a merge.", examples=[["id"]])
    # a column whose type changes incompatibly (e.g. BIGINT then VARCHAR) fails the run unless
    # this is set: then the column becomes VARCHAR
    widen_to_varchar: bool = Field(
        False,
        description="A column whose type changes incompatibly becomes VARCHAR instead of"
        " failing the run.",
        examples=[True],
    )
    export: ExportFormat | None = Field(
        None,
        description="Rewrite a file of the whole table after each commit (absent: none).",
        examples=["parquet"],
    )  # absent: no export file
    schema_contract: SchemaContract = Field(
        SchemaContract.EVOLVE,
        description="When a run's rows do not fit the existing table: evolve it (add columns,"
        " widen types), freeze (fail the run naming the columns), discard_columns (drop new"
        " columns; a retyped value that does not convert becomes NULL) or discard_rows (drop"
        " the rows that do not fit, counted as rows_discarded).",
        examples=["freeze"],
    )

    @model_validator(mode="after")
    def _merge_needs_key(self) -> Destination:
        if self.write is WriteMode.MERGE and not self.primary_key:
            raise ValueError("primary_key is required when write is merge")
        return self


class JobSpec(Strict):
    """One sync job: an HTTP source, a DuckDB destination, when it runs."""

    name: str = Field(
        pattern=JOB_NAME_PATTERN,
        description="The job's name: lowercase letters, digits and _, starting with a letter.",
        examples=["demo_orders"],
    )
    description: str = Field(
        "", description="A note for humans.", examples=["Orders, merged on id every 30 seconds"]
    )
    enabled: bool = Field(
        True, description="false: the schedule and triggers start no run.", examples=[False]
    )
    schedule: Schedule | None = Field(
        None,
        description="When the job runs by itself (absent: only when triggered).",
        examples=[{"interval": "30s"}],
    )
    triggers: Triggers = Field(
        Triggers(),
        description="Other jobs whose success starts this one.",
        examples=[{"after": ["demo_customers"]}],
    )
    priority: int = Field(
        50, ge=0, le=100, description="0 to 100: higher is dispatched first.", examples=[60]
    )
    max_active_runs: int = Field(
        1, ge=1, description="Runs of this job active at once at most.", examples=[2]
    )
    timeout: Duration = Field(
        timedelta(minutes=30), description="Timeout of one attempt of a run.", examples=["5m"]
    )
    retries: Retries = Field(
        Retries(),
        description="Attempts of a failed run.",
        examples=[{"max_attempts": 3, "backoff": "10s"}],
    )
    source: HttpSource = Field(
        description="The HTTP API the job reads.",
        examples=[
            {"type": "http", "url": "https://api.example.com/v1/orders", "records": "$.data"}
        ],
    )
    transform: Transform | None = Field(
        None,
        description="SQL over each page's records before they land.",
        examples=[{"sql": "SELECT * FROM records WHERE status = 'paid'"}],
    )
    destination: Destination = Field(
        description="Where the records land: the table and how rows are written.",
        examples=[{"table": "orders", "write": "merge", "primary_key": ["id"]}],
    )
    checks: list[Check] = Field(
        [],
        description="Checks run inside the commit transaction over `records` (the run's rows)"
        " and `target` (the table after the write): a failing `fail` check lands nothing.",
        examples=[
            [
                {"name": "ids_present", "sql": "SELECT count(*) = 0 FROM records WHERE id IS NULL"},
                {"type": "row_count", "min": 1},
                {"type": "unique", "columns": ["id"]},
            ]
        ],
    )
    alerts: Alerts | None = Field(
        None,
        description="Freshness alerts and which events go to the alert webhook (absent: runs"
        " that fail for good and checks that fail).",
        examples=[
            {
                "stale_after": "2h",
                "on": [AlertOn.FAILED.value, AlertOn.RECOVERED.value, AlertOn.CHECK_FAILED.value],
            }
        ],
    )

    _unique_check_names = field_validator("checks")(unique_check_names)

    @model_validator(mode="after")
    def _known_placeholders(self, info: ValidationInfo) -> JobSpec:
        """With for_each or window, each `{name}` of the request and each `include` must be a
        column of the rows or a window bound (when the rows' columns are known here; else the
        run checks them against the rows it gets)."""
        source = self.source
        if not is_input(info) or (source.for_each is None and source.window is None):
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
        if is_input(info) and self.name in self.triggers.after:
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
            and not (i > 1 and loc[i - 2] == "checks" and p in _CHECK_TAGS)
        ]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append((".".join(loc), msg))
    return out


_UNION_FIELDS = {"auth", "paginate"}
_CHECK_TAGS = {"sql", "row_count", "not_null", "unique", "accepted_values", "freshness"}
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
