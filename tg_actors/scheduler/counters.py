"""RunCounters: the Scheduler's running metric counters of ended runs, free of Ray and DuckDB.

Seeded once, at the Scheduler's boot, from one aggregate query over `tg.runs`
(Database.run_totals), then moved by the run ends the Scheduler itself handles: a run it
tracks ending (succeeded on RunFinished, failed for good, cancelled, created skipped), and
every attempt's HTTP responses (RunFinished/RunFailed `requests`). /metrics reads a
snapshot of them: no table scan per scrape.

Counted once per run: only the end of a run the Scheduler tracks (its StateManager) moves
them, and a run tracked at boot was open then, so not in the seed. A run ended where the
Scheduler did not see it (an end it learns of only by reconciling with DuckDB) is counted
at the next boot's seed. HTTP responses are counted from the Scheduler's start (tg.runs
keeps no per-code figures).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tg_actors.metrics import DURATION_BUCKETS, Histogram
from tg_actors.runstate import TERMINAL, RunState


@dataclass
class RunCounters:
    buckets: tuple[float, ...] = DURATION_BUCKETS
    finished: dict[tuple[str, str], int] = field(default_factory=dict)  # (job, state) -> runs
    rows: dict[str, int] = field(default_factory=dict)  # job -> rows of its succeeded runs
    requests: dict[tuple[str, str], int] = field(default_factory=dict)  # (job, code) -> n
    durations: dict[str, Histogram] = field(default_factory=dict)  # job -> succeeded runs
    seeded: bool = False

    def seed(self, totals: Iterable[Mapping[str, Any]]) -> None:
        """Add Database.run_totals' rows (once: a boot tried again does not add them twice)."""
        if self.seeded:
            return
        for row in totals:
            job, state = str(row["job"]), str(row["state"])
            self._add(self.finished, (job, state), int(row["runs"]))
            if state == RunState.SUCCEEDED:
                self._add(self.rows, job, int(row["rows"]))
            spread = row.get("durations") or {}
            if int(spread.get("count", 0)):
                self._histogram(job).merge(spread)
        self.seeded = True

    def ended(self, job: str, state: RunState | str) -> None:
        """A run of `job` reached `state` (terminal; anything else is ignored)."""
        if RunState(state) in TERMINAL:
            self._add(self.finished, (job, str(RunState(state))), 1)

    def succeeded(self, job: str, rows: int, seconds: float | None) -> None:
        """A run of `job` succeeded with `rows`, `seconds` from its start (None: unknown)."""
        self.ended(job, RunState.SUCCEEDED)
        self._add(self.rows, job, max(0, int(rows)))
        if seconds is not None:
            self._histogram(job).observe(max(0.0, seconds))

    def requested(self, job: str, codes: Mapping[str, int]) -> None:
        """An attempt of `job` got these HTTP responses ({"200": n, ...})."""
        for code, n in codes.items():
            self._add(self.requests, (job, str(code)), int(n))

    def snapshot(self) -> dict[str, Any]:
        """Plain data for /metrics (it crosses an actor call): lists of [labels..., value]."""
        return {
            "finished": [[job, state, n] for (job, state), n in sorted(self.finished.items())],
            "rows": [[job, n] for job, n in sorted(self.rows.items())],
            "requests": [[job, code, n] for (job, code), n in sorted(self.requests.items())],
            "durations": {job: h.snapshot() for job, h in sorted(self.durations.items())},
        }

    def _histogram(self, job: str) -> Histogram:
        if job not in self.durations:
            self.durations[job] = Histogram(buckets=self.buckets)
        return self.durations[job]

    @staticmethod
    def _add(counts: dict[Any, int], key: Any, n: int) -> None:
        counts[key] = counts.get(key, 0) + n
