"""Freshness: which jobs have gone stale (`alerts.stale_after` without a success), which have
recovered, and which events a job's `alerts.on` sends to the webhook. Pure: the Scheduler
feeds it what it learns (a success, a run failed for good, a tick) and publishes what it
answers.

A job goes stale once per stale period: `due` answers it the first tick past the deadline
and never again until the job succeeds, which answers `job_recovered` once. Its clock starts
at the job's last success, or, for a job that never succeeded, at the moment the Scheduler
first learned of it (a fresh start is no alert). What is stale is kept in memory: after a
Scheduler restart a job still stale alerts again, once.
"""

from __future__ import annotations

from datetime import datetime

from tg_actors.jobs import AlertOn, JobSpec

# a job without `alerts:` gets today's webhook: runs failed for good, and checks that fail
DEFAULT_ON = frozenset({AlertOn.FAILED, AlertOn.CHECK_FAILED})


def wants(spec: JobSpec | None, event: AlertOn) -> bool:
    """Whether the job's `alerts.on` sends `event` to the webhook."""
    if spec is None or spec.alerts is None:
        return event in DEFAULT_ON
    return event in spec.alerts.on


class Freshness:
    def __init__(self) -> None:
        self._last: dict[str, datetime] = {}  # job -> its last success
        self._since: dict[str, datetime] = {}  # job -> when first known (clock of a never-success)
        self._stale: set[str] = set()
        self._failing: set[str] = set()

    def load(self, successes: dict[str, datetime]) -> None:
        """The last success of each job, as DuckDB has it (at start)."""
        for job, at in successes.items():
            if job not in self._last or at > self._last[job]:
                self._last[job] = at

    def known(self, job: str, now: datetime) -> None:
        """The Scheduler has the job (loaded or created)."""
        self._since.setdefault(job, now)

    def forget(self, job: str) -> None:
        for table in (self._last, self._since):
            table.pop(job, None)
        self._stale.discard(job)
        self._failing.discard(job)

    def succeeded(self, job: str, at: datetime) -> AlertOn | None:
        """A run of the job succeeded: what it recovered from, if anything (once)."""
        if job not in self._last or at > self._last[job]:
            self._last[job] = at
        was: AlertOn | None = None  # STALE or FAILED
        if job in self._stale:
            was = AlertOn.STALE
        elif job in self._failing:
            was = AlertOn.FAILED
        self._stale.discard(job)
        self._failing.discard(job)
        return was

    def failed(self, job: str) -> None:
        """A run of the job failed for good."""
        self._failing.add(job)

    def due(self, specs: dict[str, JobSpec], now: datetime) -> list[tuple[str, datetime | None]]:
        """Jobs that went stale by `now` and were not yet: (job, last success or None), each
        once per stale period."""
        out = []
        for job, spec in specs.items():
            limit = spec.alerts.stale_after if spec.alerts is not None else None
            if limit is None or job in self._stale:
                continue
            last = self._last.get(job)
            start = last if last is not None else self._since.setdefault(job, now)
            if now - start >= limit:
                self._stale.add(job)
                out.append((job, last))
        return out

    def is_stale(self, job: str) -> bool:
        return job in self._stale

    def last_successes(self) -> dict[str, datetime]:
        return dict(self._last)
