"""Run states and trigger kinds (CONTRACT §4), spelled once, and the table of legal moves.

    queued ──► running ──► succeeded
      │  ▲        │  │
      │  └────────┘  ├──► retrying ──► queued
      │ (engine died)└──► failed / cancelled
      └──► skipped / failed / cancelled

A run is created `queued` (to be dispatched) or `skipped` (an overlap policy said no). Every
state change goes through `check_transition`, so a late or duplicated message (a `running`
report after the user cancelled) is refused instead of resurrecting a finished run.

A run's `trigger` says what made it: a `Trigger` member, or `after:<job>` for a run fired by
the success of an upstream job (`after_trigger` spells it, `upstream_of` reads it back). These
strings are what users see in the API, the UI and `tg.runs`: the rest of the code uses the
names below, never the strings (tests/unit/test_vocabulary.py checks).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from tg_actors.errors import IllegalTransition

__all__ = [
    "backfill_range",
    "backfill_trigger",
    "split_trigger",
    "ACTIVE",
    "AFTER_PREFIX",
    "INITIAL",
    "TERMINAL",
    "TICK_TRIGGERS",
    "TRANSITIONS",
    "RunState",
    "Trigger",
    "after_trigger",
    "can_transition",
    "check_transition",
    "upstream_of",
]


class RunState(enum.StrEnum):
    """Where a run is in its life. The values are the strings users see in the API and DB."""

    QUEUED = "queued"
    """Waiting in the task queue for a free engine (and for its `due` time)."""
    RUNNING = "running"
    """An engine is executing the current attempt."""
    RETRYING = "retrying"
    """An attempt failed and another is allowed; waiting out the backoff before re-queueing."""
    SUCCEEDED = "succeeded"
    """Finished: rows and cursor committed in one transaction."""
    FAILED = "failed"
    """Finished: attempts exhausted or a non-retryable error; nothing of the run committed."""
    CANCELLED = "cancelled"
    """Finished: stopped by a user or by shutdown; nothing of the run committed."""
    SKIPPED = "skipped"
    """Finished without running: recorded so a tick refused by `overlap: skip` stays visible."""


INITIAL: frozenset[RunState] = frozenset({RunState.QUEUED, RunState.SKIPPED})
"""States a run may be created in."""

TERMINAL: frozenset[RunState] = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.SKIPPED}
)
"""States a run never leaves."""

ACTIVE: frozenset[RunState] = frozenset({RunState.QUEUED, RunState.RUNNING, RunState.RETRYING})
"""States that count against `max_active_runs` and `overlap`."""


class Trigger(enum.StrEnum):
    """What made a run, besides `after:<job>` (see `after_trigger`). The values are the
    strings users see in the API, the UI and `tg.runs.trigger`."""

    SCHEDULE = "schedule"
    """A schedule tick fired on time (within the grace period)."""
    CATCHUP = "catchup"
    """A schedule tick missed while the system was down, fired late (`schedule.catchup`)."""
    MANUAL = "manual"
    """An external trigger: `POST /api/jobs/{name}/runs`, the UI's run button, `tg run`."""
    BACKFILL = "backfill"
    """A run over a time range (`tg backfill`, `POST /api/jobs/{name}/backfill`) that leaves
    the job's cursors and window positions alone."""
    REFRESH = "refresh"
    """A full re-read (`tg refresh`, `POST /api/jobs/{name}/refresh`): stored cursors ignored;
    on success the table is replaced by its rows and the cursors reset, in one transaction."""


TICK_TRIGGERS: tuple[Trigger, ...] = (Trigger.SCHEDULE, Trigger.CATCHUP)
"""Triggers of schedule ticks: the runs the Scheduler's watermark is read from."""

AFTER_PREFIX: Final = "after:"
"""`after:<job>`: the trigger of a run fired by a success of the upstream `<job>`."""


def after_trigger(upstream: str) -> str:
    """The trigger of a run fired by a success of `upstream` (`triggers: {after: [...]}`)."""
    return AFTER_PREFIX + upstream


def upstream_of(trigger: str) -> str | None:
    """The upstream job of an `after:<job>` trigger; None for any other trigger."""
    if trigger.startswith(AFTER_PREFIX) and len(trigger) > len(AFTER_PREFIX):
        return trigger[len(AFTER_PREFIX) :]
    return None


BACKFILL_PREFIX: Final = "backfill:"
"""`backfill:<from>/<to>` (ISO instants): how the Scheduler hands a backfill's range to the
run it creates; the store keeps `backfill` as the trigger and the range in its own columns,
written in the same insert as the run (a backfill never runs without its range)."""


def backfill_trigger(start: datetime, end: datetime) -> str:
    """The trigger string of a backfill over [start, end)."""
    return f"{BACKFILL_PREFIX}{_instant(start)}/{_instant(end)}"


def backfill_range(trigger: str) -> tuple[datetime, datetime] | None:
    """The (from, to) of a `backfill_trigger` string; None for any other trigger."""
    if not trigger.startswith(BACKFILL_PREFIX):
        return None
    start, _, end = trigger[len(BACKFILL_PREFIX) :].partition("/")
    return _parse_instant(start), _parse_instant(end)


def split_trigger(trigger: str) -> tuple[str, tuple[datetime | None, datetime | None]]:
    """(the trigger as stored, (range_from, range_to)): a `backfill_trigger` string becomes
    `backfill` and its range; any other trigger stays itself, with no range."""
    span = backfill_range(trigger)
    if span is None:
        return trigger, (None, None)
    return Trigger.BACKFILL.value, span


def _instant(moment: datetime) -> str:
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _parse_instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_S = RunState
TRANSITIONS: Mapping[RunState, frozenset[RunState]] = MappingProxyType(
    {
        # failed: e.g. its job was deleted or its secret is missing before it could start
        _S.QUEUED: frozenset({_S.RUNNING, _S.CANCELLED, _S.FAILED, _S.SKIPPED}),
        # queued: its engine died mid-attempt, so the scheduler dispatches it again
        _S.RUNNING: frozenset({_S.SUCCEEDED, _S.FAILED, _S.CANCELLED, _S.RETRYING, _S.QUEUED}),
        # succeeded: an attempt presumed lost (lease expired) committed after all
        _S.RETRYING: frozenset({_S.QUEUED, _S.CANCELLED, _S.FAILED, _S.SUCCEEDED}),
        _S.SUCCEEDED: frozenset(),
        _S.FAILED: frozenset(),
        _S.CANCELLED: frozenset(),
        _S.SKIPPED: frozenset(),
    }
)
"""Every legal move: TRANSITIONS[current] holds the states `current` may go to."""


def _parse(state: RunState | str) -> RunState | None:
    try:
        return RunState(state)
    except ValueError:
        return None


def can_transition(current: RunState | str, target: RunState | str) -> bool:
    """True when the table allows `current` -> `target`; unknown names and staying put are not."""
    cur, tgt = _parse(current), _parse(target)
    return cur is not None and tgt is not None and tgt in TRANSITIONS[cur]


def check_transition(run_id: str, current: RunState | str, target: RunState | str) -> RunState:
    """Return `target` as a RunState, or raise IllegalTransition for a move not in the table.

    Staying in the same state is illegal too: a repeated event must not be applied twice.
    """
    if not can_transition(current, target):
        raise IllegalTransition(run_id, str(current), str(target))
    return RunState(target)
