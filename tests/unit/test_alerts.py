"""The alert webhook (tg_actors/scheduler/alerts.py) against a real HTTP receiver on 127.0.0.1, and the
ErrorHandler raising exactly one alert per run failed for good."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from tests.kit.servers import Receiver, serve_app
from tests.kit.states import FakeStates
from tg_actors.jobs import parse_job
from tg_actors.runstate import RunState
from tg_actors.scheduler.alerts import AlertSender, run_failed
from tg_actors.scheduler.error_handler import ErrorHandler
from tg_actors.scheduler.states import StateManager, TrackedRun

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    hook = Receiver()
    with serve_app(hook.app()) as base:
        yield hook, f"{base}/hook/s3cr3t-path"


class FakeTime:
    """sleep() that only advances a clock: retries take no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def sender(url: str, fake: FakeTime, **options: Any) -> AlertSender:
    return AlertSender(url, sleep=fake.sleep, clock=fake.clock, **options)


ALERT = run_failed("run-1", "orders", 3, "HTTP 500 from the source", NOW)


def test_the_alert_body() -> None:
    assert ALERT == {
        "event": "run_failed",
        "run_id": "run-1",
        "job": "orders",
        "attempt": 3,
        "error": "HTTP 500 from the source",
        "finished_at": "2026-03-01T12:00:00+00:00",
    }


def test_the_post_arrives_with_the_alert_as_json(receiver: tuple[Receiver, str]) -> None:
    hook, url = receiver

    async def go() -> AlertSender:
        alerts = sender(url, FakeTime())
        alerts.send(ALERT)  # returns at once: the POST goes on in the background
        assert hook.bodies == []
        assert await alerts.drain(10)
        return alerts

    alerts = asyncio.run(go())
    assert hook.bodies == [ALERT] and hook.tries == 1
    assert (alerts.sent, alerts.failed, alerts.dropped) == (1, 0, 0)


def test_a_receiver_failing_twice_gets_it_on_the_third_try() -> None:
    hook = Receiver(fail_first=2, status=503)
    fake = FakeTime()
    with serve_app(hook.app()) as base:

        async def go() -> None:
            alerts = sender(f"{base}/hook/x", fake, backoff=1.0)
            alerts.send(ALERT)
            assert await alerts.drain(10)

        asyncio.run(go())
    assert hook.tries == 3 and hook.bodies == [ALERT]
    assert fake.sleeps == [1.0, 2.0]  # exponential backoff, waited on the injected clock


def test_backoff_is_bounded_and_tries_are_counted() -> None:
    hook = Receiver(fail_first=100, status=500)
    fake = FakeTime()
    with serve_app(hook.app()) as base:

        async def go() -> AlertSender:
            alerts = sender(f"{base}/hook/x", fake, tries=5, backoff=1.0, max_backoff=3.0)
            alerts.send(ALERT)
            assert await alerts.drain(10)
            return alerts

        alerts = asyncio.run(go())
    assert hook.tries == 5 and hook.bodies == []
    assert fake.sleeps == [1.0, 2.0, 3.0, 3.0]
    assert (alerts.sent, alerts.failed) == (0, 1)


def test_a_client_error_is_not_retried() -> None:
    hook = Receiver(fail_first=100, status=400)
    fake = FakeTime()
    with serve_app(hook.app()) as base:

        async def go() -> None:
            alerts = sender(f"{base}/hook/x", fake)
            alerts.send(ALERT)
            assert await alerts.drain(10)

        asyncio.run(go())
    assert hook.tries == 1 and fake.sleeps == []


def dead_url() -> str:
    """A port on 127.0.0.1 where nothing listens (bound, never listened on)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://user:pw@127.0.0.1:{port}/hooks/T000/B000/XXXXSECRET?token=abc"


def test_a_dead_receiver_is_logged_sanitized_and_never_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = dead_url()
    fake = FakeTime()

    async def go() -> AlertSender:
        alerts = sender(url, fake, tries=3)
        alerts.send(ALERT)
        assert await alerts.drain(10)
        alerts.send(ALERT)  # the sender still works after a failure
        assert await alerts.drain(10)
        return alerts

    with caplog.at_level(logging.WARNING, logger="tg_actors.scheduler.alerts"):
        alerts = asyncio.run(go())
    assert alerts.failed == 2 and alerts.sent == 0
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2, failures
    port = url.split(":")[3].split("/")[0]
    assert f"http://127.0.0.1:{port}/***" in failures[0] and "run-1" in failures[0]
    text = caplog.text
    assert "XXXXSECRET" not in text and "pw" not in text and "abc" not in text


def test_pending_alerts_are_bounded_the_oldest_dropped_with_a_warning(
    receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    hook, url = receiver

    async def go() -> AlertSender:
        alerts = sender(url, FakeTime(), max_pending=2)
        for i in range(5):  # no await in between: the background task has not run yet
            alerts.send(run_failed(f"run-{i}", "orders", 1, "boom", NOW))
        assert await alerts.drain(10)
        return alerts

    with caplog.at_level(logging.WARNING, logger="tg_actors.scheduler.alerts"):
        alerts = asyncio.run(go())
    assert [b["run_id"] for b in hook.bodies] == ["run-3", "run-4"]
    assert alerts.dropped == 3
    assert sum("dropped the oldest" in r.getMessage() for r in caplog.records) == 3


def test_drain_gives_up_after_its_timeout() -> None:
    async def go() -> None:
        async def slow_sleep(_seconds: float) -> None:
            await asyncio.sleep(3600)

        alerts = AlertSender(dead_url(), sleep=slow_sleep)
        alerts.send(ALERT)
        assert await alerts.drain(0.5) is False  # still retrying: stop does not wait forever
        alerts.close()

    asyncio.run(go())


# -- the ErrorHandler -------------------------------------------------------------------------


class RecordingSender(AlertSender):
    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9/unused")
        self.alerts: list[dict[str, Any]] = []

    def send(self, alert: dict[str, Any]) -> None:
        self.alerts.append(alert)


def test_error_handler_alerts_once_for_good_never_for_a_retried_attempt() -> None:
    spec = parse_job(
        {
            "name": "orders",
            "retries": {"max_attempts": 2, "backoff": "1s"},
            "source": {"url": "http://127.0.0.1:9/x"},
            "destination": {"table": "orders"},
        }
    )
    run = TrackedRun("r1", "orders", RunState.RUNNING, "manual", 1, 50, NOW)
    states = FakeStates(run)
    recorder = RecordingSender()
    handler = ErrorHandler(cast(StateManager, states), sender=recorder)

    async def go() -> None:
        assert await handler.failed(run, spec, "first", 1, NOW) is True  # retried: no alert
        assert recorder.alerts == []
        run.state, run.attempt = RunState.RUNNING, 2  # the retry's attempt 2 runs, and fails
        assert await handler.failed(run, spec, "second", 2, NOW) is False  # for good
        await handler.drain_alerts(1)

    asyncio.run(go())
    assert [m[1] for m in states.moves] == [RunState.RETRYING, RunState.FAILED]
    assert recorder.alerts == [run_failed("r1", "orders", 2, "second", NOW)]


def test_error_handler_posts_to_the_configured_webhook_url(
    receiver: tuple[Receiver, str],
) -> None:
    hook, url = receiver  # alert_webhook_url alone (as the Scheduler passes it) still works
    run = TrackedRun("r9", "orders", RunState.RUNNING, "schedule", 1, 50, NOW)
    handler = ErrorHandler(cast(StateManager, FakeStates(run)), alert_webhook_url=url)

    async def go() -> None:
        assert await handler.failed(run, None, "no retries", 0, NOW) is False
        await handler.drain_alerts(10)

    asyncio.run(go())
    assert hook.bodies == [run_failed("r9", "orders", 1, "no retries", NOW)]
