"""The building blocks of the job models (jobs.py, jobsource.py): `Strict` (unknown keys are
errors, frozen, a repr that never shows a secret), `Duration` (30s, 5m, 1h30m or seconds,
bounded), `JsonPath` (checked when a job comes in), and `is_input` (the checks that apply
to what comes in from files, the API and the UI, not to a job read back from DuckDB)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
)

from tg_actors.durations import format_duration, parse_duration
from tg_actors.errors import SourceError
from tg_actors.redaction import mask_value

MAX_DURATION = timedelta(days=3650)  # past this, schedule arithmetic leaves datetime's range
# parse_job's validation context: the checks added for what comes in (API, UI, files) apply;
# a spec read back from the database (validated without it) is not refused after the fact, so
# a job stored before a check existed still loads (the run's sandbox still guards it)
INPUT = {"tg_input": True}


def is_input(info: ValidationInfo) -> bool:
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
    if delta > MAX_DURATION and is_input(info):
        raise ValueError(too_long)
    return delta


def _jsonpath(value: str, info: ValidationInfo) -> str:
    """A JSONPath the run will be able to use: checked when the job is validated, so a typo
    is a 422 naming the field, not a failed run later."""
    if not is_input(info):
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

ISO_DURATION_PATTERN = (
    r"^[Pp](\d+(\.\d+)?[Dd])?([Tt](\d+(\.\d+)?[Hh])?(\d+(\.\d+)?[Mm])?(\d+(\.\d+)?[Ss])?)?$"
)
Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ms|s|m|h|d))+\s*$"},
                {"type": "string", "pattern": ISO_DURATION_PATTERN},
                {"type": "number", "minimum": 0},
            ],
            "description": "30s, 5m, 2h, 1d, 1h30m, 250ms, an ISO 8601 duration (PT30M), or a"
            " number of seconds",
        }
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def __repr__(self) -> str:  # never leak a resolved or referenced secret in a repr
        fields = ", ".join(f"{k}={v!r}" for k, v in mask_value(self.model_dump()).items())
        return f"{type(self).__name__}({fields})"

    __str__ = __repr__
