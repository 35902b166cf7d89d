"""/metrics text (tg_actors/metrics.py): one Scheduler snapshot rendered by prometheus_client,
read back with prometheus_client's own parser; the fixed-bucket Histogram."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tg_actors.metrics import CONTENT_TYPE, Histogram, exposition
from tg_actors.scheduler.counters import RunCounters


def test_histogram_is_cumulative() -> None:
    hist = Histogram(buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 0.5, 3.0):
        hist.observe(value)
    assert hist.snapshot() == {"buckets": [0.1, 1.0], "counts": [1, 3], "sum": 4.05, "count": 4}


def test_histogram_merges_only_the_same_buckets() -> None:
    hist = Histogram(buckets=(0.1, 1.0))
    hist.merge({"buckets": [0.1, 1.0], "counts": [1, 2], "sum": 1.5, "count": 3})
    assert hist.snapshot() == {"buckets": [0.1, 1.0], "counts": [1, 2], "sum": 1.5, "count": 3}
    with pytest.raises(ValueError, match="buckets differ"):
        hist.merge({"buckets": [5.0], "counts": [1], "sum": 1.0, "count": 1})


def snapshot() -> dict[str, Any]:
    lateness = Histogram(buckets=(0.1,))
    lateness.observe(0.2)
    counters = RunCounters(buckets=(1.0, 10.0))
    counters.succeeded("orders", 120, 0.5)
    counters.succeeded("orders", 30, 4.0)
    counters.ended("users", "failed")
    counters.requested("orders", {"200": 2})
    counters.requested("users", {"404": 1})
    return {
        "engines": 2,
        "slots": 4,
        "running": 1,
        "queue_depth": 3,
        "jobs": 2,
        "retry_waiting": 1,
        "lateness": lateness.snapshot(),
        "active": {"queued": 3, "running": 1, "retrying": 1},
        "counters": counters.snapshot(),
        "last_success": {"orders": 1772366400.0},
        "stale": {"orders": 0.0, 'we"ird': 1.0},
        "checks_failed": {"orders": 2},
        "version": "0.1.0",
    }


def samples() -> dict[str, list[Sample]]:
    """Every sample of the rendered snapshot, by sample name, as the parser reads them."""
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(exposition(snapshot()).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    (match,) = [s.value for s in found[name] if s.labels == labels]
    return match


def test_the_snapshot_reads_back_through_prometheus_clients_parser() -> None:
    found = samples()
    assert value(found, "tg_runs_active", state="queued") == 3
    assert value(found, "tg_runs_finished_total", state="succeeded", tg_job="orders") == 2
    assert value(found, "tg_runs_finished_total", state="failed", tg_job="users") == 1
    assert value(found, "tg_rows_loaded_total", tg_job="orders") == 150
    assert value(found, "tg_source_requests_total", tg_job="users", code="404") == 1
    assert value(found, "tg_run_duration_seconds_bucket", tg_job="orders", le="1.0") == 1
    assert value(found, "tg_run_duration_seconds_bucket", tg_job="orders", le="+Inf") == 2
    assert value(found, "tg_run_duration_seconds_count", tg_job="orders") == 2
    assert value(found, "tg_run_duration_seconds_sum", tg_job="orders") == 4.5
    assert value(found, "tg_trigger_lateness_seconds_bucket", le="0.1") == 0
    assert value(found, "tg_trigger_lateness_seconds_count") == 1
    assert value(found, "tg_queue_depth") == 3 and value(found, "tg_engine_utilisation") == 0.25
    assert value(found, "tg_job_last_success_timestamp_seconds", tg_job="orders") == 1772366400
    assert value(found, "tg_job_stale", tg_job='we"ird') == 1  # escaped and read back
    assert value(found, "tg_checks_failed_total", tg_job="orders") == 2
    assert value(found, "tg_build_info", version="0.1.0") == 1
    # no series carries `job`: Prometheus sets that label itself, to the scrape job
    assert not [s for group in found.values() for s in group if "job" in s.labels]


def test_the_deprecated_tg_runs_is_active_plus_finished() -> None:
    found = samples()
    assert {s.labels["state"]: s.value for s in found["tg_runs"]} == {
        "queued": 3,
        "running": 1,
        "retrying": 1,
        "succeeded": 2,
        "failed": 1,
        "cancelled": 0,
        "skipped": 0,
    }


def test_the_content_type_is_prometheus_text() -> None:
    assert CONTENT_TYPE.startswith("text/plain; version=")
