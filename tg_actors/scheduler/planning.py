"""The Scheduler's pure decisions about new runs: which ticks are due, which run and which
are skipped (`overlap: skip`), with which priority, when a queued run may start (`jitter`,
`overlap: queue`, `max_active_runs`), which instants manual triggers take, and which jobs
a success triggers (`triggers.after`)."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tg_actors.jobs import JobSpec, Overlap, WriteMode, schedule_part
from tg_actors.runstate import Trigger
from tg_actors.scheduler.schedule import apply_jitter, due_ticks, next_fire


@dataclass
class JobEntry:
    """A job as the Scheduler holds it; `watermark` is the newest tick already turned into a
    run, so an edit or a restart never fires a tick twice."""

    spec: JobSpec
    stored: dict[str, Any]
    paused: bool
    watermark: datetime

    @property
    def schedulable(self) -> bool:
        return self.spec.enabled and not self.paused and self.spec.schedule is not None

    def next_run_at(self, now: datetime) -> datetime | None:
        if not self.schedulable or self.spec.schedule is None:
            return None
        return next_fire(self.spec.schedule, max(self.watermark, now))

    def may_start(self, running: int) -> bool:
        """Whether a queued run may start while `running` runs of the job are in flight:
        `overlap: queue` waits until the active run ends; never above max_active_runs."""
        schedule = self.spec.schedule
        if schedule is not None and schedule.overlap is Overlap.QUEUE and running:
            return False
        return running < self.spec.max_active_runs

    def edited_watermark(self, stored: dict[str, Any], paused: bool, now: datetime) -> datetime:
        """The watermark once `stored` and `paused` replace this entry: an edit must not
        re-fire ticks already run, but a new schedule, re-enabled or resumed counts from
        `now`, as DuckDB's schedule_from does after a restart (the window before is not
        replayed)."""
        if schedule_part(self.stored) != schedule_part(stored) or (self.paused and not paused):
            return max(self.watermark, now)
        return self.watermark


NewTick = tuple[JobEntry, datetime, str]  # a run to create: (job, scheduled_for, trigger)


@dataclass(frozen=True)
class PlannedRun:
    job: str
    scheduled_for: datetime
    trigger: str
    priority: int
    skip: bool  # recorded as `skipped`: the job already has an active run (overlap: skip)


def plan_runs(
    batch: list[NewTick],
    is_active: Callable[[str], bool],
    priority: int | None = None,
    check_overlap: bool = True,
) -> list[PlannedRun]:
    """One PlannedRun per (job, tick, trigger), in order. A job's first run in the batch makes
    it active, so its later ticks in the same batch are skipped under `overlap: skip`."""
    becoming_active: set[str] = set()
    plans = []
    for entry, when, trigger in batch:
        spec = entry.spec
        skip = (
            check_overlap
            and spec.schedule is not None
            and spec.schedule.overlap is Overlap.SKIP
            and (spec.name in becoming_active or is_active(spec.name))
        )
        if not skip:
            becoming_active.add(spec.name)
        prio = spec.priority if priority is None else priority
        plans.append(PlannedRun(spec.name, when, trigger, prio, skip))
    return plans


def start_at(entry: JobEntry, when: datetime, trigger: str, rng: random.Random) -> datetime:
    """When a queued run may start: its tick, delayed by up to `jitter` for scheduled ticks
    (scheduled_for stays the tick)."""
    schedule = entry.spec.schedule
    if schedule is not None and schedule.jitter and trigger == Trigger.SCHEDULE:
        return apply_jitter(when, schedule.jitter, rng)
    return when


@dataclass
class DueRuns:
    """What one turn of the loop fires: the new runs, each job fired with the watermark it
    takes once they exist in DuckDB, and the jobs whose catch-up was bounded."""

    runs: list[NewTick] = field(default_factory=list)
    fired: list[tuple[JobEntry, datetime]] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)


def due_runs(
    names: Iterable[str], jobs: Mapping[str, JobEntry], now: datetime, up_since: datetime
) -> DueRuns:
    """The ticks due at `now` of the jobs `names` (those FireTimes says are due); jobs gone,
    paused, disabled or without a schedule are left out. Ticks after `up_since` fell while
    the Scheduler was up: on time however late they are handled."""
    out = DueRuns()
    for name in names:
        entry = jobs.get(name)
        if entry is None or not entry.schedulable or entry.spec.schedule is None:
            continue
        due = due_ticks(entry.spec.schedule, entry.watermark, now, up_since=up_since)
        if due.cut:
            out.cut.append(entry.spec.name)
        out.runs.extend((entry, tick, trigger) for tick, trigger in due.ticks)
        out.fired.append((entry, due.next_after))
    return out


def off_schedule(entry: JobEntry, when: datetime) -> datetime:
    """`when`, or a microsecond later if it is one of the job's schedule ticks: a manual run
    must never take a tick's (job, scheduled_for), or that tick would be lost."""
    schedule = entry.spec.schedule
    if schedule is not None and next_fire(schedule, when - timedelta(microseconds=1)) == when:
        return when + timedelta(microseconds=1)
    return when


def group_triggers(
    items: list[tuple[str, int | None, str]], jobs: Mapping[str, JobEntry], now: datetime
) -> dict[int | None, list[tuple[int, NewTick]]]:
    """Manual triggers (job, priority, trigger) grouped by priority, each with its index in
    `items`; those of unknown jobs are left out. Runs are unique on (job, scheduled_for): a
    job's triggers in one batch get distinct instants, a microsecond apart, none a tick."""
    last: dict[str, datetime] = {}
    by_priority: dict[int | None, list[tuple[int, NewTick]]] = {}
    for i, (job, priority, trigger) in enumerate(items):
        entry = jobs.get(job)
        if entry is None:
            continue
        when = max(now, last[job] + timedelta(microseconds=1)) if job in last else now
        when = off_schedule(entry, when)
        last[job] = when
        by_priority.setdefault(priority, []).append((i, (entry, when, trigger)))
    return by_priority


def dependents_of(entries: Iterable[JobEntry]) -> dict[str, list[str]]:
    """upstream job -> the jobs its successes trigger (their `triggers.after`), in order."""
    out: dict[str, list[str]] = {}
    for each in entries:
        for upstream in each.spec.triggers.after:
            out.setdefault(upstream, []).append(each.spec.name)
    return out


def dependency_edges(
    entries: Iterable[JobEntry], upstream: str | None = None
) -> list[tuple[str, str, int]]:
    """(dependent, upstream, place in its `after` list) of every enabled, unpaused job, for
    the one `upstream` job or (None) all."""
    return [
        (entry.spec.name, up, place)
        for entry in entries
        if entry.spec.enabled and not entry.paused
        for place, up in enumerate(entry.spec.triggers.after)
        if upstream in (None, up)
    ]


class FireTimes:
    """When each scheduled job is next due, earliest first: the Scheduler sleeps until then
    instead of checking every job on every tick. A heap with lazy deletion: `set` supersedes
    a job's earlier entry, which is dropped when it surfaces."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._next: dict[str, datetime] = {}

    def set(self, job: str, when: datetime | None) -> None:
        """Check `job` at `when` (None: never, e.g. paused or no schedule)."""
        if when is None:
            self._next.pop(job, None)
            return
        self._next[job] = when
        heapq.heappush(self._heap, (when, job))
        if len(self._heap) > 2 * len(self._next) + 64:  # stale entries dominate: rebuild
            self._heap = [(w, j) for j, w in self._next.items()]
            heapq.heapify(self._heap)

    def pop_due(self, now: datetime) -> list[str]:
        """Jobs due at `now`, each once; they leave until `set` again."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            when, job = heapq.heappop(self._heap)
            if self._next.get(job) == when:
                del self._next[job]
                due.append(job)
        return due

    def earliest(self) -> datetime | None:
        while self._heap and self._next.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._next)


def backfill_problem(spec: JobSpec, start: datetime, end: datetime) -> str | None:
    """Why job `spec` cannot backfill [start, end), or None: the range must be bounded by
    windows or by an until_param, and the write must keep the rows outside the range."""
    name = spec.name
    if start.tzinfo is None or end.tzinfo is None:
        return "from and to must be instants with a timezone (or Z)"
    if start >= end:
        return f"from ({start.isoformat()}) must be before to ({end.isoformat()})"
    if spec.destination.write is WriteMode.REPLACE:
        return (
            f"job {name} writes with replace: a backfill would leave only its range in the"
            " table; use refresh to re-read everything"
        )
    incremental = spec.source.incremental
    if spec.source.window is None and (incremental is None or not incremental.until_param):
        return (
            f"job {name} has no source.window and no source.incremental.until_param: a"
            " backfill could not bound its range"
        )
    return None
