"""The job file's trust fields (CONTRACT §7.3): `checks`, `alerts` and the destination's
`schema_contract`. jobs.py re-exports every name here.

A check runs inside the commit transaction (store/checks.py): `records` are the run's rows as
they land (after transform and the schema contract), `target` the table after this run's
write. A `fail` check that does not pass rolls the commit back; a `warn` one is recorded.
"""

from __future__ import annotations

import enum
from abc import abstractmethod
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from tg_actors.jobbase import Duration, Strict, is_input
from tg_actors.runstate import RunState

COLUMN = Annotated[str, Field(min_length=1, max_length=255)]


class OnFail(enum.StrEnum):
    FAIL = "fail"  # roll the commit back: nothing lands, the run fails and is not retried
    WARN = "warn"  # record the failure, land the rows


class Over(enum.StrEnum):
    RECORDS = "records"  # the run's rows
    TARGET = "target"  # the table as it is after this run's write


class SchemaContract(enum.StrEnum):
    """What a run whose rows do not fit the existing table does (the table's first run
    creates it whatever the contract)."""

    EVOLVE = "evolve"  # add new columns, widen compatible types (the default)
    FREEZE = "freeze"  # a new or changed column fails the run, nothing committed
    DISCARD_COLUMNS = "discard_columns"  # new columns dropped; other values cast or NULL
    DISCARD_ROWS = "discard_rows"  # rows that do not fit dropped, counted on the run


class AlertOn(enum.StrEnum):
    FAILED = RunState.FAILED.value  # a run failed for good
    RECOVERED = "recovered"  # the first success after a failure or after going stale
    CHECK_FAILED = "check_failed"  # a check did not pass (fail or warn)
    STALE = "stale"  # no success for `stale_after`


class _Check(Strict):
    name: str | None = Field(
        None,
        min_length=1,
        max_length=120,
        description="The check's name in results and errors (default: made from its type"
        " and columns).",
        examples=["ids_present"],
    )
    on_fail: OnFail = Field(
        OnFail.FAIL,
        description="fail: a check that does not pass lands nothing and fails the run;"
        " warn: it is recorded and the rows land.",
        examples=["warn"],
    )

    def label(self, index: int) -> str:
        """The name of the check at `index` of `checks`: its own, or one made from what it
        checks."""
        return self.name or self.default_name(index)

    @abstractmethod  # every check type names itself from what it checks
    def default_name(self, index: int) -> str: ...


class SqlCheck(_Check):
    """A read-only query over `records` and `target` returning one row: a boolean first (true
    passes), and optionally a value to show second."""

    type: Literal["sql"] = Field("sql", description="sql (the default).", examples=["sql"])
    sql: str = Field(
        min_length=1,
        description="One read-only SELECT over `records` (the run's rows) and `target` (the"
        " table after this run's write) whose first column is true when the check passes;"
        " a second column, if any, is the value shown.",
        examples=["SELECT count(*) = 0 FROM records WHERE id IS NULL"],
    )

    @field_validator("sql")
    @classmethod
    def _read_only(cls, value: str, info: ValidationInfo) -> str:
        if not is_input(info):
            return value
        from tg_actors.transform import check_sql_problem

        problem = check_sql_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def default_name(self, index: int) -> str:
        return f"sql_{index + 1}"


class RowCountCheck(_Check):
    """The number of rows is within [min, max]."""

    type: Literal["row_count"] = Field(description="The kind of check.", examples=["row_count"])
    min: int | None = Field(None, ge=0, description="Fewest rows that pass.", examples=[1])
    max: int | None = Field(None, ge=0, description="Most rows that pass.", examples=[100000])
    over: Over = Field(
        Over.RECORDS,
        description="records: the run's rows; target: the table after the write.",
        examples=["target"],
    )

    @model_validator(mode="after")
    def _bounds(self) -> RowCountCheck:
        if self.min is None and self.max is None:
            raise ValueError("row_count needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def default_name(self, index: int) -> str:
        return f"row_count_{self.over.value}"


class NotNullCheck(_Check):
    """No row has a NULL in any of `columns`."""

    type: Literal["not_null"] = Field(description="The kind of check.", examples=["not_null"])
    columns: list[COLUMN] = Field(
        min_length=1, description="Columns that must never be NULL.", examples=[["id", "amount"]]
    )
    over: Over = Field(
        Over.RECORDS,
        description="records: the run's rows; target: the table after the write.",
        examples=["target"],
    )

    def default_name(self, index: int) -> str:
        return "not_null_" + "_".join(self.columns)


class UniqueCheck(_Check):
    """No two rows share the values of `columns`."""

    type: Literal["unique"] = Field(description="The kind of check.", examples=["unique"])
    columns: list[COLUMN] = Field(
        min_length=1, description="Columns whose values together are unique.", examples=[["id"]]
    )
    over: Over = Field(
        Over.TARGET,
        description="target (default): the table after the write; records: the run's rows.",
        examples=["records"],
    )

    def default_name(self, index: int) -> str:
        return "unique_" + "_".join(self.columns)


class AcceptedValuesCheck(_Check):
    """Every non-NULL value of `column` is one of `values` (compared as text)."""

    type: Literal["accepted_values"] = Field(
        description="The kind of check.", examples=["accepted_values"]
    )
    column: COLUMN = Field(description="The column checked.", examples=["status"])
    values: list[str | int | float | bool] = Field(
        min_length=1,
        description="The values allowed.",
        examples=[["paid", "refunded", "pending"]],
    )
    over: Over = Field(
        Over.RECORDS,
        description="records: the run's rows; target: the table after the write.",
        examples=["target"],
    )

    def default_name(self, index: int) -> str:
        return f"accepted_values_{self.column}"


class FreshnessCheck(_Check):
    """The newest value of `column` (a timestamp or date; naive means UTC) is at most
    `max_age` old when the run commits."""

    type: Literal["freshness"] = Field(description="The kind of check.", examples=["freshness"])
    column: COLUMN = Field(description="A timestamp or date column.", examples=["updated_at"])
    max_age: Duration = Field(description="How old the newest value may be.", examples=["1d"])
    over: Over = Field(
        Over.TARGET,
        description="target (default): the table after the write; records: the run's rows.",
        examples=["records"],
    )

    def default_name(self, index: int) -> str:
        return f"freshness_{self.column}"


def _check_kind(value: Any) -> str:
    if isinstance(value, dict):
        kind = value.get("type")
        return str(kind) if kind is not None else "sql"
    return str(getattr(value, "type", "sql"))


# `type` picks the model; a check without one is a `sql` check
Check = Annotated[
    Annotated[SqlCheck, Tag("sql")]
    | Annotated[RowCountCheck, Tag("row_count")]
    | Annotated[NotNullCheck, Tag("not_null")]
    | Annotated[UniqueCheck, Tag("unique")]
    | Annotated[AcceptedValuesCheck, Tag("accepted_values")]
    | Annotated[FreshnessCheck, Tag("freshness")],
    Discriminator(_check_kind),
]
AnyCheck = (
    SqlCheck | RowCountCheck | NotNullCheck | UniqueCheck | AcceptedValuesCheck | FreshnessCheck
)


def unique_check_names(checks: list[Any]) -> list[Any]:
    """checks' validator: two checks with one name would share one result row."""
    seen: set[str] = set()
    for i, check in enumerate(checks):
        name = check.label(i)
        if name in seen:
            raise ValueError(f"checks[{i}]: a second check named {name!r}; give it a `name`")
        seen.add(name)
    return checks


class Alerts(Strict):
    """What is sent to the alert webhook (TG_ALERT_WEBHOOK_URL) for this job."""

    stale_after: Duration | None = Field(
        None,
        description="Alert (`job_stale`) when the job has had no successful run for this"
        " long, and again (`job_recovered`) when it next succeeds.",
        examples=["2h"],
    )
    on: list[AlertOn] = Field(
        [AlertOn.FAILED, AlertOn.RECOVERED, AlertOn.CHECK_FAILED, AlertOn.STALE],
        description="The events that go to the webhook (default: all of them).",
        examples=[[AlertOn.FAILED.value, AlertOn.RECOVERED.value, AlertOn.CHECK_FAILED.value]],
    )

    @field_validator("stale_after")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("stale_after must be longer than 0s")
        return value
