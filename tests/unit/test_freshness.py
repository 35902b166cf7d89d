"""Freshness (tg_actors/scheduler/freshness.py): a job past its `alerts.stale_after` without a
success goes stale once, recovers once; `alerts.on` picks what goes to the webhook; the Slack
body; the ErrorHandler filtering `failed`; the per-job metrics lines."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.kit.servers import Receiver, serve_app
from tests.kit.states import FakeStates
from tg_actors.attempts import Commit
from tg_actors.jobs import AlertOn, JobSpec, WriteMode, parse_job
from tg_actors.metrics import exposition
from tg_actors.runstate import RunState, Trigger
from tg_actors.scheduler.alerts import (
    AlertSender,
    check_failed,
    job_recovered,
    job_stale,
    run_failed,
    slack,
)
from tg_actors.scheduler.error_handler import ErrorHandler
from tg_actors.scheduler.freshness import Freshness, wants
from tg_actors.scheduler.states import StateManager, TrackedRun
from tg_actors.settings import Settings
from tg_actors.store.duckdb import DuckStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def job(name: str = "orders", **alerts: Any) -> JobSpec:
    raw: dict[str, Any] = {
        "name": name,
        "source": {"url": "http://127.0.0.1:9/x"},
        "destination": {"table": name},
    }
    if alerts:
        raw["alerts"] = alerts
    return parse_job(raw)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_stale_once_per_period_then_recovered_once() -> None:
    specs = {"orders": job(stale_after="10m")}
    fresh = Freshness()
    fresh.load({"orders": at(0)})
    fresh.known("orders", at(0))
    assert fresh.due(specs, at(9)) == []
    assert not fresh.is_stale("orders")
    assert fresh.due(specs, at(10)) == [("orders", at(0))]  # exactly at the deadline
    for minute in (11, 30, 600):  # every later tick: no repeat
        assert fresh.due(specs, at(minute)) == []
    assert fresh.is_stale("orders")
    assert fresh.succeeded("orders", at(601)) == "stale"
    assert fresh.succeeded("orders", at(602)) is None  # recovered once
    assert not fresh.is_stale("orders")
    assert fresh.last_successes() == {"orders": at(602)}
    # a new stale period, counted from the last success: fires once again
    assert fresh.due(specs, at(611)) == []
    assert fresh.due(specs, at(612)) == [("orders", at(602))]
    assert fresh.due(specs, at(700)) == []


def test_a_job_that_never_succeeded_counts_from_when_it_was_known() -> None:
    specs = {"new": job("new", stale_after="1h")}
    fresh = Freshness()
    fresh.known("new", at(30))
    fresh.known("new", at(50))  # learned again (an edit): the first moment stays
    assert fresh.due(specs, at(89)) == []
    assert fresh.due(specs, at(90)) == [("new", None)]
    assert fresh.due(specs, at(200)) == []
    assert fresh.last_successes() == {}


def test_a_job_without_stale_after_never_goes_stale() -> None:
    specs = {"plain": job("plain"), "alerts_no_stale": job("alerts_no_stale", on=["failed"])}
    fresh = Freshness()
    for name in specs:
        fresh.known(name, at(0))
    assert fresh.due(specs, at(60 * 24 * 365)) == []
    assert not fresh.is_stale("plain") and not fresh.is_stale("alerts_no_stale")


def test_load_keeps_the_newest_success_and_an_old_success_does_not_move_it_back() -> None:
    fresh = Freshness()
    fresh.succeeded("orders", at(20))
    fresh.load({"orders": at(10), "users": at(5)})
    assert fresh.last_successes() == {"orders": at(20), "users": at(5)}
    fresh.succeeded("orders", at(15))  # a late message of an older run
    assert fresh.last_successes()["orders"] == at(20)


def test_the_first_success_after_a_run_failed_for_good_is_a_recovery() -> None:
    fresh = Freshness()
    assert fresh.succeeded("orders", at(1)) is None  # nothing to recover from
    fresh.failed("orders")
    assert fresh.succeeded("orders", at(2)) == "failed"
    assert fresh.succeeded("orders", at(3)) is None


def test_stale_wins_over_failed_and_forget_clears_the_job() -> None:
    specs = {"orders": job(stale_after="1m")}
    fresh = Freshness()
    fresh.known("orders", at(0))
    fresh.failed("orders")
    assert fresh.due(specs, at(1)) == [("orders", None)]
    assert fresh.succeeded("orders", at(2)) == "stale"
    fresh.forget("orders")
    assert fresh.last_successes() == {} and not fresh.is_stale("orders")
    fresh.known("orders", at(10))  # re-created: its clock starts again
    assert fresh.due(specs, at(10.5)) == []


@pytest.mark.parametrize(
    ("alerts", "sent"),
    [
        (None, {AlertOn.FAILED, AlertOn.CHECK_FAILED}),  # no `alerts:`: today's behaviour + checks
        ({"stale_after": "1h"}, set(AlertOn)),  # `on` defaults to all four
        ({"on": ["stale", "recovered"]}, {AlertOn.STALE, AlertOn.RECOVERED}),
        ({"on": []}, set()),
    ],
)
def test_alerts_on_picks_the_events(alerts: dict[str, Any] | None, sent: set[AlertOn]) -> None:
    spec = job(**alerts) if alerts is not None else job()
    assert {event for event in AlertOn if wants(spec, event)} == sent


def test_an_unknown_job_gets_the_default_events() -> None:
    assert wants(None, AlertOn.FAILED) and wants(None, AlertOn.CHECK_FAILED)
    assert not wants(None, AlertOn.STALE) and not wants(None, AlertOn.RECOVERED)


def test_the_json_bodies_name_their_event() -> None:
    assert job_stale("orders", T0, 7200.0) == {
        "event": "job_stale",
        "job": "orders",
        "last_success_at": "2026-03-01T12:00:00+00:00",
        "stale_after_seconds": 7200.0,
    }
    assert job_stale("orders", None, 60.0)["last_success_at"] is None
    assert job_recovered("orders", "r1", "stale", T0) == {
        "event": "job_recovered",
        "job": "orders",
        "run_id": "r1",
        "was": "stale",
        "at": "2026-03-01T12:00:00+00:00",
    }
    assert check_failed("r1", "orders", ["ids_present", "row_count"], T0) == {
        "event": "check_failed",
        "run_id": "r1",
        "job": "orders",
        "checks": ["ids_present", "row_count"],
        "at": "2026-03-01T12:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("alert", "words"),
    [
        (run_failed("r1", "orders", 3, "HTTP 500", T0), ["orders", "r1", "failed", "HTTP 500"]),
        (job_stale("orders", None, 60.0), ["orders", "stale", "never"]),
        (job_stale("orders", T0, 60.0), ["orders", "stale", "2026-03-01T12:00:00+00:00"]),
        (job_recovered("orders", "r2", "stale", T0), ["orders", "recovered", "r2"]),
        (check_failed("r3", "orders", ["ids_present"], T0), ["orders", "ids_present"]),
    ],
)
def test_the_slack_body_is_one_readable_line_and_blocks(
    alert: dict[str, Any], words: list[str]
) -> None:
    body = slack(alert)
    assert set(body) == {"text", "blocks"}
    assert "\n" not in body["text"]
    for word in words:
        assert word in body["text"]
    (block,) = body["blocks"]
    assert block["type"] == "section" and block["text"]["type"] == "mrkdwn"
    assert f"*event*: {alert['event']}" in block["text"]["text"]


def test_tg_alert_format_defaults_to_json_and_takes_slack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().alert_format == "json"
    monkeypatch.setenv("TG_ALERT_FORMAT", "slack")
    assert Settings().alert_format == "slack"
    monkeypatch.setenv("TG_ALERT_FORMAT", "xml")
    with pytest.raises(ValueError):
        Settings()


def test_the_slack_format_posts_the_slack_body_to_a_real_receiver() -> None:
    hook = Receiver()
    alert = job_stale("orders", None, 60.0)

    async def go(url: str) -> None:
        sender = AlertSender(url, format="slack")
        sender.send(alert)
        assert await sender.drain(10)

    with serve_app(hook.app()) as base:
        asyncio.run(go(f"{base}/hook/s"))
    assert hook.bodies == [slack(alert)]


class RecordingSender:
    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []

    def send(self, alert: dict[str, Any]) -> None:
        self.alerts.append(alert)


@pytest.mark.parametrize(("on", "alerted"), [(["failed"], True), (["stale", "recovered"], False)])
def test_a_run_failed_for_good_is_alerted_only_when_on_has_failed(
    on: list[str], alerted: bool
) -> None:
    spec = job(on=on)
    run = TrackedRun("r1", "orders", RunState.RUNNING, "manual", 1, 50, T0)
    recorder, gave_up = RecordingSender(), []
    handler = ErrorHandler(
        cast(StateManager, FakeStates(run)),
        sender=cast(AlertSender, recorder),
        gave_up=lambda r: gave_up.append(r.run_id),
    )
    assert asyncio.run(handler.failed(run, spec, "boom", 0, T0)) is False
    assert recorder.alerts == ([run_failed("r1", "orders", 1, "boom", T0)] if alerted else [])
    assert gave_up == ["r1"]  # Freshness hears of it whatever the webhook gets


def test_the_per_job_metrics_carry_the_tg_job_label() -> None:
    snap: dict[str, Any] = {
        "engines": 1, "slots": 1, "running": 0, "queue_depth": 0, "jobs": 2, "retry_waiting": 0,
        "lateness": {"buckets": [1.0], "counts": [0], "sum": 0.0, "count": 0},
        "last_success": {"orders": 1772366400.0},
        "stale": {"orders": 1.0, "users": 0.0},
        "checks_failed": {'we"ird': 2},
    }  # fmt: skip
    text = exposition(snap).decode()
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    last = "tg_job_last_success_timestamp_seconds"
    assert found[last, (("tg_job", "orders"),)] == 1772366400.0
    assert found["tg_job_stale", (("tg_job", "orders"),)] == 1.0
    assert found["tg_job_stale", (("tg_job", "users"),)] == 0.0
    assert "# TYPE tg_checks_failed_total counter" in text
    assert found["tg_checks_failed_total", (("tg_job", 'we"ird'),)] == 2


def test_slack_body_of_a_stale_job_reads_as_one_line() -> None:
    body = slack(job_stale("orders", None, 7200.0))
    assert body["text"] == "turbo-giggle: orders is stale: no successful run since never"


def test_the_store_answers_each_jobs_newest_success(tmp_path: Path) -> None:
    """What the Scheduler loads into Freshness: succeeded runs only, the newest per job."""
    now = [T0]
    store = DuckStore(tmp_path / "s.duckdb", clock=lambda: now[0])
    try:
        for name, minute in (("a", 1), ("a", 5), ("b", 3)):
            now[0] = at(minute)
            run_id = store.create_run(name, at(minute), Trigger.MANUAL, state=RunState.RUNNING)
            assert run_id is not None
            store.commit_run(Commit(run_id, table=name, write=WriteMode.APPEND, pages=0))
        now[0] = at(9)
        failed = store.create_run("a", at(9), Trigger.MANUAL, state=RunState.RUNNING)
        assert failed is not None
        store.update_run(
            failed,
            expect_state=RunState.RUNNING,
            expect_attempt=1,
            state=RunState.FAILED,
            finished_at=at(9),
        )
        store.create_run("c", at(9), Trigger.MANUAL)  # queued, never ended
        assert store.last_successes() == {"a": at(5), "b": at(3)}
    finally:
        store.close()
