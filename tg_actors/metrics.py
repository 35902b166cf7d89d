"""/metrics: one snapshot of the Scheduler's figures in the Prometheus exposition format.

The numbers live in the Scheduler (queue, engines, in-memory run states, trigger lateness,
freshness, and the running counters of ended runs, scheduler/counters.py); the Serve app asks
it for one snapshot per scrape and renders it here with prometheus_client: a custom collector
yields metric families from that snapshot into a private registry (never the process-global
one: nothing else of the process leaks into our /metrics), and `generate_latest` writes it.
No DuckDB query per scrape. Every per-job series has the label `tg_job` (Prometheus sets
`job` itself, to the scrape job's name). Also the fixed-bucket Histogram the Scheduler keeps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from tg_actors.runstate import ACTIVE, TERMINAL, RunState

LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# a run lasts from under a second (a small API) to hours (a backfill)
DURATION_BUCKETS = (
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
)
CONTENT_TYPE = CONTENT_TYPE_LATEST  # what the /metrics route answers with


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENESS_BUCKETS
    counts: list[int] = field(default_factory=list)  # cumulative: values <= each bound
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def merge(self, snap: Mapping[str, Any]) -> None:
        """Add a snapshot of the same buckets (a seed read from DuckDB). ValueError else."""
        if [float(b) for b in snap["buckets"]] != [float(b) for b in self.buckets]:
            raise ValueError(f"histogram buckets differ: {snap['buckets']} != {self.buckets}")
        self.counts = [a + int(b) for a, b in zip(self.counts, snap["counts"], strict=True)]
        self.total += float(snap["sum"])
        self.count += int(snap["count"])

    def snapshot(self) -> dict[str, object]:
        return {
            "buckets": list(self.buckets),
            "counts": list(self.counts),
            "sum": self.total,
            "count": self.count,
        }


def _buckets(snap: Mapping[str, Any]) -> list[tuple[str, float]]:
    """Histogram.snapshot() as prometheus_client's cumulative (le, count) pairs, +Inf last."""
    pairs = [
        (repr(float(bound)), float(n))  # what prometheus_client writes for these bounds
        for bound, n in zip(snap["buckets"], snap["counts"], strict=True)
    ]
    return [*pairs, ("+Inf", float(snap["count"]))]


class SnapshotCollector(Collector):
    """The metric families of one Scheduler.metrics() snapshot (plus `version`)."""

    def __init__(self, snap: Mapping[str, Any]) -> None:
        self._snap = snap

    def collect(self) -> Iterator[Metric]:
        snap = self._snap
        counters: Mapping[str, Any] = snap.get("counters") or {}
        yield from self._runs(snap, counters)
        yield from self._fleet(snap)
        lateness = HistogramMetricFamily(
            "tg_trigger_lateness_seconds",
            "Run start minus its scheduled time (since the scheduler started).",
        )
        late = snap["lateness"]
        lateness.add_metric([], _buckets(late), sum_value=float(late["sum"]))
        yield lateness
        yield from self._jobs(snap)
        info = InfoMetricFamily("tg_build", "The turbo-giggle version serving this.")
        info.add_metric([], {"version": str(snap.get("version", "unknown"))})
        yield info

    @staticmethod
    def _runs(snap: Mapping[str, Any], counters: Mapping[str, Any]) -> Iterator[Metric]:
        active_counts: Mapping[str, int] = snap.get("active") or {}
        active = GaugeMetricFamily(
            "tg_runs_active", "Runs queued, running or retrying now.", labels=["state"]
        )
        for state in sorted(s.value for s in ACTIVE):
            active.add_metric([state], float(active_counts.get(state, 0)))
        yield active
        finished = CounterMetricFamily(
            "tg_runs_finished_total",
            "Runs ended, by end state and job (seeded from tg.runs when the scheduler starts).",
            labels=["state", "tg_job"],
        )
        ended: dict[str, int] = dict.fromkeys((s.value for s in TERMINAL), 0)
        for job, state, n in counters.get("finished", []):
            finished.add_metric([state, job], float(n))
            ended[state] = ended.get(state, 0) + int(n)
        yield finished
        # deprecated: the one series of before, kept for dashboards that still read it
        compat = GaugeMetricFamily(
            "tg_runs",
            "Deprecated (use tg_runs_active and tg_runs_finished_total): runs by state.",
            labels=["state"],
        )
        for state in RunState:
            n = active_counts.get(state.value, 0) if state in ACTIVE else ended.get(state, 0)
            compat.add_metric([state.value], float(n))
        yield compat
        duration = HistogramMetricFamily(
            "tg_run_duration_seconds",
            "Start to finish of succeeded runs (the attempt that succeeded), by job.",
            labels=["tg_job"],
        )
        for job, spread in (counters.get("durations") or {}).items():
            duration.add_metric([job], _buckets(spread), sum_value=float(spread["sum"]))
        yield duration
        rows = CounterMetricFamily(
            "tg_rows_loaded_total", "Rows committed by succeeded runs, by job.", labels=["tg_job"]
        )
        for job, n in counters.get("rows", []):
            rows.add_metric([job], float(n))
        yield rows
        requests = CounterMetricFamily(
            "tg_source_requests_total",
            "HTTP responses from the sources by status code (since the scheduler started).",
            labels=["tg_job", "code"],
        )
        for job, code, n in counters.get("requests", []):
            requests.add_metric([job, code], float(n))
        yield requests

    @staticmethod
    def _fleet(snap: Mapping[str, Any]) -> Iterator[Metric]:
        busy, slots = snap["running"], snap["slots"]
        for name, text, value in (
            ("tg_queue_depth", "Runs queued and waiting for an engine.", snap["queue_depth"]),
            ("tg_retry_waiting", "Runs waiting out a retry backoff.", snap["retry_waiting"]),
            ("tg_engines", "SyncEngine actors.", snap["engines"]),
            ("tg_engine_slots", "Runs the engines can work on at once.", slots),
            ("tg_runs_in_flight", "Runs handed to an engine and not ended.", busy),
            (
                "tg_engine_utilisation",
                "Runs in flight / engine slots.",
                busy / slots if slots else 0,
            ),
            ("tg_jobs", "Jobs known to the scheduler.", snap["jobs"]),
        ):
            yield GaugeMetricFamily(name, text, value=float(value))

    @staticmethod
    def _jobs(snap: Mapping[str, Any]) -> Iterator[Metric]:
        for name, text, values in (
            (
                "tg_job_last_success_timestamp_seconds",
                "Unix time of the job's last succeeded run.",
                snap.get("last_success") or {},
            ),
            (
                "tg_job_stale",
                "1 while a job with alerts.stale_after is stale, else 0.",
                snap.get("stale") or {},
            ),
        ):
            gauge = GaugeMetricFamily(name, text, labels=["tg_job"])
            for job, value in sorted(values.items()):
                gauge.add_metric([job], float(value))
            yield gauge
        checks = CounterMetricFamily(
            "tg_checks_failed_total",
            "Check results that did not pass (since the scheduler started).",
            labels=["tg_job"],
        )
        for job, n in sorted((snap.get("checks_failed") or {}).items()):
            checks.add_metric([job], float(n))
        yield checks


def tg_version() -> str:
    """The installed turbo-giggle's version (tg_build_info), "unknown" when not installed."""
    try:
        return version("turbo-giggle")
    except PackageNotFoundError:
        return "unknown"


def exposition(snap: Mapping[str, Any]) -> bytes:
    """The Prometheus text of one snapshot (content type CONTENT_TYPE)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snap))
    return generate_latest(registry)
