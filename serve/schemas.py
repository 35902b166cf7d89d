"""The answers of the HTTP API (CONTRACT §4) as pydantic models, for the OpenAPI document only.

The routes keep building their answers as before and hand them over as a finished response
(`answer()`), so a model here never reshapes, drops or re-types a field: each documents what
the route sends. Every model allows extra fields (`additionalProperties`), so an answer that
gains a field still matches its schema; a field is required only where every answer has it.
Also here: the error bodies and which routes declare which error statuses.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tg_actors.runstate import RunState


class Answer(BaseModel):
    """Base of the answer models: extra fields allowed (and kept: nothing is re-serialised)."""

    model_config = ConfigDict(extra="allow")


def answer(body: Any, status_code: int = 200) -> JSONResponse:
    """`body` as FastAPI would send it with no response model (jsonable_encoder, then its
    JSONResponse), so declaring `response_model` changes no answer."""
    return JSONResponse(jsonable_encoder(body), status_code=status_code)


Timestamp = str  # ISO 8601 text, UTC


class Health(Answer):
    status: Literal["ok", "starting", "degraded"]
    components: dict[str, str] = Field(
        description="each component's state: alive, starting, dead, ..."
    )


class Run(Answer):
    """A run as `GET /api/runs` lists it (every field is there, null when unknown)."""

    run_id: str
    job: str
    state: RunState
    trigger: str = Field(description="schedule, manual, after:<job>, catchup, backfill, ...")
    attempt: int | None
    priority: int | None
    scheduled_for: Timestamp | None
    queued_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    rows_loaded: int | None
    pages: int | None
    error: str | None
    engine: str | None = None
    range_from: Timestamp | None = None
    range_to: Timestamp | None = None
    skipped_requests: int | None = None
    rows_discarded: int | None = None


class CheckResult(Answer):
    name: str
    passed: bool | None = None
    value: Any = None
    on_fail: str | None = None


class RunDetail(Run):
    """A run with its check results (empty when its job has none)."""

    checks: list[CheckResult] = []


class LogLine(Answer):
    ts: Timestamp | None
    level: str
    message: str


class CommandEntry(Answer):
    """One command of the audit log (`GET /api/commands`): no body, no secret."""

    command_id: str
    kind: Literal["upsert", "delete", "pause", "resume", "trigger", "cancel", "scale"]
    job: str | None
    who: Literal["api", "ui"]
    received_at: Timestamp
    answered_at: Timestamp | None
    outcome: str | None = Field(
        description="what it did, or why it was refused; null: no answer yet"
    )


class JobSummary(Answer):
    """A job as `GET /api/jobs` lists it."""

    name: str
    enabled: bool
    paused: bool
    schedule: Any = Field(None, description="the job's schedule, or null for none")
    next_run_at: Timestamp | None = None
    last_run: Run | None = None


class JobStatus(Answer):
    paused: bool
    next_run_at: Timestamp | None = None
    active_runs: int = 0
    last_run: Run | None = None


class PausedJob(JobStatus):
    """`POST /api/jobs/{name}/pause` and `/resume`: the job's status and name."""

    name: str


class Job(Answer):
    """The stored job (the JobSpec object, secrets shown as `***`), its origin and status."""

    name: str
    paused: bool
    origin: str = Field(description="file or api")
    status: JobStatus


class Validated(Answer):
    valid: Literal[True]
    job: dict[str, Any] = Field(description="the job as it would be stored, secrets masked")


class RunAccepted(Answer):
    run_id: str


class Cancelled(Answer):
    run_id: str
    state: Literal[RunState.CANCELLED]


class Column(Answer):
    name: str
    type: str


class Table(Answer):
    name: str
    rows: int | None = None
    columns: list[Column] = []


class TablePreview(Answer):
    columns: list[str]
    rows: list[list[Any]]


class Engine(Answer):
    name: str
    state: str = Field(description="up, draining, unavailable")
    current_runs: list[str] = []


class Engines(Answer):
    count: int
    capacity: int
    running: int
    queue_depth: int
    nodes: int
    engines: list[Engine]


class EnginesScaled(Engines):
    added: list[str]
    removed: list[str]
    interrupted: list[str] = Field(description="runs of removed engines sent back to the queue")


class Preview(Answer):
    """A test read (README "Test a job before saving it"): requests with secrets masked,
    pages, a sample, column types, the stop reason, warnings; nothing written."""

    job: str
    table: str
    pages_read: int = 0
    records: int = 0
    requests: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    sample: dict[str, Any] = {}
    columns: list[dict[str, Any]] = []
    table_exists: bool | None = None
    next_request: dict[str, Any] | None = None
    stop: dict[str, Any] | None = None
    chain: dict[str, Any] | None = None
    cursor: dict[str, Any] | None = None
    expect_total: dict[str, Any] | None = None
    warnings: list[Any] = []
    error: Any = None


class SqlColumn(Answer):
    name: str
    type: str


class SqlAnswer(Answer):
    columns: list[SqlColumn]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    elapsed_ms: float


# -- errors ----------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every error but a validation error: `{"detail": "..."}`."""

    model_config = ConfigDict(extra="allow")

    detail: str | list[Any] | dict[str, Any]


class FieldError(BaseModel):
    """One refused field; a YAML body's also by `line` and `column`."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str
    line: int | None = None
    column: int | None = None


class ValidationErrorBody(BaseModel):
    """422: `{"detail": [{"loc", "msg", "type"}]}`, the fields in error."""

    model_config = ConfigDict(extra="allow")

    detail: list[FieldError]


Responses = dict[int | str, dict[str, Any]]  # FastAPI's `responses=`


def _error(status: int, description: str, model: type[BaseModel] = ErrorBody) -> Responses:
    return {status: {"model": model, "description": description}}


UNAUTHORIZED = _error(401, "missing or invalid bearer token")
UNAVAILABLE = _error(503, "a component (actor) did not answer; try again")
NOT_FOUND_JOB = _error(404, "no job of that name")
NOT_FOUND_RUN = _error(404, "no run of that id")
NOT_FOUND_TABLE = _error(404, "no data table of that name")
INVALID = _error(422, "invalid input, by field path", ValidationErrorBody)
CONFLICT_ENDED = _error(409, "the run has ended already")


def responses(*parts: Responses) -> Responses:
    """The answers a route declares besides its own (401 and 503 come with its router)."""
    out: Responses = {}
    for part in parts:
        out.update(part)
    return out


class EventStream(StreamingResponse):
    """The answer of GET /api/events, documented as `text/event-stream`."""

    media_type = "text/event-stream"


EVENTS_RESPONSES: Responses = {
    200: {
        "description": "server-sent events for as long as the client listens: `event: run` "
        "per run state change (and the job events), `data:` a JSON object",
        "content": {
            "text/event-stream": {
                "schema": {"type": "string", "description": "an SSE stream"},
                "example": 'event: run\ndata: {"run_id": "...", "job": "orders", '
                '"state": "running"}\n\n',
            }
        },
    }
}
