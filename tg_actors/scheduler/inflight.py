"""The runs the Scheduler has handed to engines and that have not ended: how many each job has
(max_active_runs, overlap), each run's lease (renewed by every sign of life from its engine)
and which engine works on it (to fail its runs at once when that engine is lost).

Pure: the Scheduler asks, and acts on the answers.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator


class InFlight:
    def __init__(self, lease_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease = lease_seconds
        self._clock = clock
        self._job: dict[str, str] = {}  # run_id -> job
        self._per_job: Counter[str] = Counter()
        self._seen: dict[str, float] = {}  # run_id -> clock() of its last sign of life
        self._engine: dict[str, str] = {}  # run_id -> engine id, once an engine said so
        self._attempt: dict[str, int] = {}  # run_id -> the attempt handed out

    def __len__(self) -> int:
        return len(self._job)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._job

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._job))  # a copy: callers release while they walk

    def running(self, job: str) -> int:
        return self._per_job[job]

    def take(self, run_id: str, job: str, attempt: int, engine: str | None = None) -> None:
        """Handed to the engines (as `attempt`): its lease starts now."""
        if run_id not in self._job:
            self._job[run_id] = job
            self._per_job[job] += 1
        if self._attempt.get(run_id) != attempt:
            self._engine.pop(run_id, None)  # a new attempt: whoever held the old one does not
        self._attempt[run_id] = attempt
        self.seen(run_id, engine, attempt)

    def attempt(self, run_id: str) -> int | None:
        return self._attempt.get(run_id)

    def release(self, run_id: str) -> str | None:
        """Ended (or given back): its job, or None if it was not in flight."""
        job = self._job.pop(run_id, None)
        if job is not None:
            self._per_job[job] -= 1
            if self._per_job[job] <= 0:
                del self._per_job[job]
        self._seen.pop(run_id, None)
        self._engine.pop(run_id, None)
        self._attempt.pop(run_id, None)
        return job

    def seen(self, run_id: str, engine: str | None = None, attempt: int | None = None) -> None:
        """A sign of life (started, heartbeat, progress): the lease starts over. Events of runs
        no longer in flight, or of another attempt than the one handed out, are ignored: a
        superseded attempt's heartbeats must not keep the new attempt's lease alive."""
        if run_id not in self._job:
            return
        if attempt is not None and self._attempt.get(run_id) != attempt:
            return
        self._seen[run_id] = self._clock()
        if engine:
            self._engine[run_id] = engine

    def expired(self) -> list[str]:
        """Runs silent for longer than the lease."""
        now = self._clock()
        return [run_id for run_id, at in self._seen.items() if now - at > self.lease]

    def held_by(self, engine: str) -> list[str]:
        return [run_id for run_id, held in self._engine.items() if held == engine]

    def clear(self) -> None:
        self._job.clear()
        self._per_job.clear()
        self._seen.clear()
        self._engine.clear()
        self._attempt.clear()
