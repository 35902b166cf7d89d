"""Freshness (stale jobs, recoveries) and which alerts a job's `alerts.on` sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tg_actors.jobs import AlertOn, JobSpec, parse_job
from tg_actors.scheduler.alerts import job_stale, slack
from tg_actors.scheduler.freshness import Freshness, wants

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def job(name: str, alerts: dict[str, Any] | None = None) -> JobSpec:
    body: dict[str, Any] = {
        "name": name,
        "source": {"url": "http://127.0.0.1:9/x"},
        "destination": {"table": name},
    }
    if alerts is not None:
        body["alerts"] = alerts
    return parse_job(body)


def test_a_job_goes_stale_once_and_recovers_once() -> None:
    specs = {"a": job("a", {"stale_after": "2h"}), "b": job("b")}
    fresh = Freshness()
    fresh.load({"a": T0})
    for name in specs:
        fresh.known(name, T0)
    assert fresh.due(specs, T0 + timedelta(hours=1)) == []
    assert fresh.due(specs, T0 + timedelta(hours=2)) == [("a", T0)]
    assert fresh.due(specs, T0 + timedelta(hours=5)) == []  # once per stale period
    assert fresh.is_stale("a")
    assert fresh.succeeded("a", T0 + timedelta(hours=6)) == "stale"
    assert fresh.succeeded("a", T0 + timedelta(hours=7)) is None  # recovered once
    assert fresh.due(specs, T0 + timedelta(hours=8)) == []
    assert fresh.due(specs, T0 + timedelta(hours=9)) == [("a", T0 + timedelta(hours=7))]


def test_a_job_that_never_succeeded_counts_from_when_it_was_known() -> None:
    specs = {"n": job("n", {"stale_after": "1h"})}
    fresh = Freshness()
    fresh.known("n", T0)
    assert fresh.due(specs, T0 + timedelta(minutes=59)) == []
    assert fresh.due(specs, T0 + timedelta(hours=1)) == [("n", None)]


def test_a_success_after_a_run_failed_for_good_is_a_recovery() -> None:
    fresh = Freshness()
    fresh.failed("f")
    assert fresh.succeeded("f", T0) == "failed"
    assert fresh.succeeded("f", T0 + timedelta(seconds=1)) is None


def test_alerts_on_picks_the_webhook_events() -> None:
    plain = job("p")
    assert wants(plain, AlertOn.FAILED) and wants(plain, AlertOn.CHECK_FAILED)
    assert not wants(plain, AlertOn.STALE) and not wants(plain, AlertOn.RECOVERED)
    chosen = job("c", {"on": ["recovered"]})
    assert wants(chosen, AlertOn.RECOVERED) and not wants(chosen, AlertOn.FAILED)


def test_slack_body_has_one_readable_line() -> None:
    body = slack(job_stale("orders", None, 7200.0))
    assert body["text"] == "turbo-giggle: orders is stale: no successful run since never"
    assert body["blocks"][0]["type"] == "section"
