"""Messages on the broker's topics: frozen, keyword-only, one discriminated union.

Commands are imperative (TriggerRun), events past tense (RunStarted). Data rows never travel
here: batches go to the Database actor as Arrow tables by ObjectRef.

Topics: `config` (JobUpserted, JobDeleted, JobPauseChanged), `triggers` (TriggerRun; the
engines compete for them), `control` (CancelRun; every engine sees it), `status`
(EngineStarted, RunStarted, RunHeartbeat, RunProgressed, RunFinished, RunFailed, RunCancelled
from engines;
RunStateChanged from the Scheduler's StateManager) fanned out to every group, `commands`
(UpsertJob, DeleteJob, SetPaused, TriggerJob, CancelRunCommand, ScaleEngines from the API and
the UI; each is answered on the broker's reply mailbox by its owner: tg_actors/commands). Every
message about a run carries (run_id, attempt): a receiver drops one of an attempt other than
the run's current one (docs/RELIABILITY.md, the run-lifecycle protocol).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tg_actors.runstate import RunState, Trigger

TOPIC_CONFIG = "config"
TOPIC_TRIGGERS = "triggers"
TOPIC_STATUS = "status"
TOPIC_CONTROL = "control"  # commands to every engine (each engine is its own group)
TOPIC_COMMANDS = "commands"  # configuration and control commands from the API and the UI


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ts: datetime = Field(default_factory=utcnow)


class JobUpserted(Message):
    kind: Literal["job_upserted"] = "job_upserted"
    name: str
    spec: dict[str, Any]  # stored form: `${NAME}` references, never secret values
    paused: bool = False


class JobDeleted(Message):
    kind: Literal["job_deleted"] = "job_deleted"
    name: str


class JobPauseChanged(Message):
    kind: Literal["job_pause_changed"] = "job_pause_changed"
    name: str
    paused: bool


class TriggerRun(Message):
    kind: Literal["trigger_run"] = "trigger_run"
    run_id: str
    job: str
    spec: dict[str, Any]
    attempt: int = 1
    trigger: str = Trigger.SCHEDULE  # a Trigger, or after_trigger(upstream)


class CancelRun(Message):
    kind: Literal["cancel_run"] = "cancel_run"
    run_id: str


class RunHeartbeat(Message):
    kind: Literal["run_heartbeat"] = "run_heartbeat"
    run_id: str
    job: str
    attempt: int  # which attempt of the run: events of another one are dropped
    engine: str


class EngineStarted(Message):
    """An engine (re)started: any run it held before is lost with its old process or node."""

    kind: Literal["engine_started"] = "engine_started"
    engine: str


class RunCancelled(Message):
    kind: Literal["run_cancelled"] = "run_cancelled"
    run_id: str
    job: str
    attempt: int  # which attempt of the run: events of another one are dropped


class RunStarted(Message):
    kind: Literal["run_started"] = "run_started"
    run_id: str
    job: str
    attempt: int  # which attempt of the run: events of another one are dropped
    engine: str


class RunProgressed(Message):
    kind: Literal["run_progressed"] = "run_progressed"
    run_id: str
    job: str
    attempt: int  # which attempt of the run: events of another one are dropped
    rows: int
    pages: int


class RunFinished(Message):
    kind: Literal["run_finished"] = "run_finished"
    run_id: str
    job: str
    attempt: int  # which attempt of the run: events of another one are dropped
    rows: int
    pages: int
    seconds: float
    skipped: list[str] = []  # URLs (secrets masked) of responses a `skip` rule dropped
    failed_checks: list[str] = []  # names of the `warn` checks that did not pass
    requests: dict[str, int] = {}  # this attempt's HTTP responses by status code ("200": n)
    started_at: datetime | None = None  # when this attempt began (its run's duration)


class RunFailed(Message):
    kind: Literal["run_failed"] = "run_failed"
    run_id: str
    job: str
    attempt: int  # which attempt of the run: events of another one are dropped
    error: str
    rows: int = 0
    pages: int = 0
    final: bool = False  # not to be retried (a `fail` response rule matched)
    failed_checks: list[str] = []  # names of the checks that did not pass (it failed on them)
    requests: dict[str, int] = {}  # this attempt's HTTP responses by status code ("200": n)


class RunStateChanged(Message):
    kind: Literal["run_state_changed"] = "run_state_changed"
    run_id: str
    job: str
    state: RunState
    previous: RunState | None = None
    attempt: int = 1
    trigger: str = Trigger.SCHEDULE  # a Trigger, or after_trigger(upstream)
    error: str | None = None


class JobStale(Message):
    """A job with `alerts.stale_after` has had no successful run for that long (once per
    stale period; `last_success_at` None: it never succeeded)."""

    kind: Literal["job_stale"] = "job_stale"
    job: str
    last_success_at: datetime | None
    stale_after_seconds: float


class JobRecovered(Message):
    """The first success of a job after it went stale or a run of it failed for good."""

    kind: Literal["job_recovered"] = "job_recovered"
    job: str
    run_id: str
    was: str  # what it recovered from: an AlertOn, `stale` or `failed`


class Command(Message):
    """A configuration or control command from a person (API or UI), applied once per
    `command_id` by its owner (tg_actors/commands/owners.py) and answered on the broker's
    reply mailbox under that id."""

    kind: str
    command_id: str
    who: Literal["api", "ui"] = "api"
    # the id was made for this command (no Idempotency-Key): nothing can have been answered
    # under it before, so its owner does not look for an earlier answer
    minted: bool = False

    @property
    def job(self) -> str | None:
        """The job the command is about, when the command names one."""
        return getattr(self, "name", None)


class UpsertJob(Command):
    kind: Literal["upsert"] = "upsert"
    name: str
    body: dict[str, Any] | str  # as the client sent it: a JSON object or YAML text


class DeleteJob(Command):
    kind: Literal["delete"] = "delete"
    name: str


class SetPaused(Command):
    kind: Literal["pause", "resume"]
    name: str

    @property
    def paused(self) -> bool:
        return self.kind == "pause"


class TriggerJob(Command):
    """A run now: Trigger.MANUAL (at `priority`), Trigger.REFRESH (a full re-read) or
    Trigger.BACKFILL over [start, end)."""

    kind: Literal["trigger"] = "trigger"
    name: str
    trigger: Trigger = Trigger.MANUAL
    priority: int | None = None
    start: datetime | None = None
    end: datetime | None = None


class CancelRunCommand(Command):
    kind: Literal["cancel"] = "cancel"
    run_id: str


class ScaleEngines(Command):
    kind: Literal["scale"] = "scale"
    count: int
    grace: float | None = None


AnyCommand = Annotated[
    UpsertJob | DeleteJob | SetPaused | TriggerJob | CancelRunCommand | ScaleEngines,
    Field(discriminator="kind"),
]

AnyMessage = Annotated[
    JobUpserted
    | JobDeleted
    | JobPauseChanged
    | TriggerRun
    | CancelRun
    | RunHeartbeat
    | EngineStarted
    | RunCancelled
    | RunStarted
    | RunProgressed
    | RunFinished
    | RunFailed
    | RunStateChanged
    | JobStale
    | JobRecovered
    | UpsertJob
    | DeleteJob
    | SetPaused
    | TriggerJob
    | CancelRunCommand
    | ScaleEngines,
    Field(discriminator="kind"),
]
MESSAGE_ADAPTER: TypeAdapter[AnyMessage] = TypeAdapter(AnyMessage)


def to_wire(message: Message) -> dict[str, Any]:
    return message.model_dump(mode="json")


def from_wire(data: dict[str, Any]) -> AnyMessage:
    return MESSAGE_ADAPTER.validate_python(data)
