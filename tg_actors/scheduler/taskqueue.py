"""The scheduler's queue of runs waiting for an engine.

Order: higher `priority` first, then earlier `due`, then first pushed (FIFO by `seq`).
Aging (`age`): a run waiting past its due time gains one priority point per `every` (up to
100), so a stream of high-priority runs cannot starve a low-priority one forever.
A heap with lazy deletion: `remove` only forgets the run in `_live`; its heap entry is dropped
when it surfaces, and the heap is rebuilt once stale entries outnumber live ones, so memory
stays bounded. Not thread-safe: the owning actor serialises calls.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

__all__ = ["QueuedRun", "TaskQueue"]


@dataclass(frozen=True)
class QueuedRun:
    run_id: str
    job: str
    priority: int
    due: datetime
    seq: int  # insertion order, unique per queue: the FIFO tie-break
    base_priority: int = -1  # the priority it was pushed with (-1: same as priority)

    @property
    def base(self) -> int:
        return self.priority if self.base_priority < 0 else self.base_priority


# (-priority, due, seq, run): seq is unique, so the run itself is never compared
_Entry = tuple[int, datetime, int, QueuedRun]


def _always(_run: QueuedRun) -> bool:
    return True


class TaskQueue:
    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[str, QueuedRun] = {}
        self._jobs: Counter[str] = Counter()
        self._seq = 0

    def push(self, run_id: str, job: str, priority: int, due: datetime) -> QueuedRun:
        """Queue a run. Idempotent: a run_id already queued is left as is and returned."""
        existing = self._live.get(run_id)
        if existing is not None:
            return existing
        run = QueuedRun(run_id=run_id, job=job, priority=priority, due=due, seq=self._seq)
        self._seq += 1
        self._live[run_id] = run
        self._jobs[job] += 1
        heapq.heappush(self._heap, (-priority, due, run.seq, run))
        return run

    def pop_ready(
        self, now: datetime, can_run: Callable[[QueuedRun], bool] = _always
    ) -> QueuedRun | None:
        """Remove and return the first run in order with due <= now and can_run(run) true.

        Runs passed over (not yet due, or refused by can_run, e.g. their job is at
        max_active_runs) keep their place. Costs O((skipped + 1) log n).
        """
        skipped: list[_Entry] = []
        found: QueuedRun | None = None
        while self._heap:
            entry = heapq.heappop(self._heap)
            run = entry[3]
            if self._live.get(run.run_id) is not run:
                continue  # removed earlier (or removed and pushed again under a new seq)
            if run.due <= now and can_run(run):
                found = run
                break
            skipped.append(entry)
        for entry in skipped:
            heapq.heappush(self._heap, entry)
        if found is not None:
            self._forget(found)
        return found

    def remove(self, run_id: str) -> bool:
        """Drop a queued run (e.g. cancelled). False when it was not queued."""
        run = self._live.get(run_id)
        if run is None:
            return False
        self._forget(run)
        # lazy deletion leaves its entry in the heap; compact when stale entries dominate
        if len(self._heap) > 2 * len(self._live) + 16:
            self._heap = [e for e in self._heap if self._live.get(e[3].run_id) is e[3]]
            heapq.heapify(self._heap)
        return True

    def age(self, now: datetime, every: timedelta, cap: int = 100) -> int:
        """Raise waiting runs' priority by one point per `every` past their due time (at most
        `cap`). Returns how many runs changed. O(n log n): call it about once a second."""
        changed = 0
        for run_id, run in list(self._live.items()):
            waited = (now - run.due) / every if now > run.due else 0
            effective = min(cap, max(run.base + int(waited), run.base))
            if effective != run.priority:
                self._live[run_id] = replace(run, priority=effective, base_priority=run.base)
                changed += 1
        if changed:
            self._heap = [(-r.priority, r.due, r.seq, r) for r in self._live.values()]
            heapq.heapify(self._heap)
        return changed

    def items(self) -> list[QueuedRun]:
        """Every queued run, in dispatch order (ignoring `due` readiness)."""
        return sorted(self._live.values(), key=lambda r: (-r.priority, r.due, r.seq))

    def count(self, job: str) -> int:
        """How many runs of `job` are queued."""
        return self._jobs[job]

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._live

    def _forget(self, run: QueuedRun) -> None:
        del self._live[run.run_id]
        self._jobs[run.job] -= 1
        if not self._jobs[run.job]:
            del self._jobs[run.job]
