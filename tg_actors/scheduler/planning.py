"""The Scheduler's pure decisions about new runs: which ticks run and which are skipped
(`overlap: skip`), with which priority, and when a queued run may start (`jitter`)."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tg_actors.jobs import JobSpec, Overlap
from tg_actors.runstate import Trigger
from tg_actors.scheduler.schedule import apply_jitter, next_fire


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


@dataclass(frozen=True)
class PlannedRun:
    job: str
    scheduled_for: datetime
    trigger: str
    priority: int
    skip: bool  # recorded as `skipped`: the job already has an active run (overlap: skip)


def plan_runs(
    batch: list[tuple[JobEntry, datetime, str]],
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
