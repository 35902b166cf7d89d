"""ErrorHandler: a failed attempt is retried (`retrying`, then `queued` again with the next
attempt number) after an exponential backoff with full jitter, until the job's
`retries.max_attempts`; then the run fails for good and raises an alert: a log line at
ERROR, a row in `tg.run_logs` (its state change) and, if configured, a POST to the alert
webhook."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx

from tg_actors.jobs import AlertOn, JobSpec
from tg_actors.redaction import sanitize_url
from tg_actors.retry import RetryPolicy
from tg_actors.runstate import RunState
from tg_actors.scheduler.alerts import AlertSender, run_failed
from tg_actors.scheduler.freshness import wants
from tg_actors.scheduler.states import StateManager, TrackedRun

log = logging.getLogger(__name__)


async def post_alert(url: str, alert: dict[str, object]) -> None:
    """POST one alert; a failure is logged, never raised (alerts must not break scheduling)."""
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            response = await client.post(url, json=alert)
            response.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("alert webhook %s failed: %s", sanitize_url(url), exc)


class ErrorHandler:
    def __init__(
        self,
        states: StateManager,
        rng: random.Random | None = None,
        alert_webhook_url: str | None = None,
        sender: AlertSender | None = None,
        alert_format: str = "json",
        gave_up: Callable[[TrackedRun], None] | None = None,
    ) -> None:
        self._states = states
        self._gave_up = gave_up  # told of each run that failed for good
        self._rng = rng or random.Random()
        self._due: dict[str, datetime] = {}  # run_id -> when it goes back to the queue
        self._webhook = alert_webhook_url
        self._alerts: set[asyncio.Task[None]] = set()
        self._sender = sender or (
            AlertSender(alert_webhook_url, format=alert_format) if alert_webhook_url else None
        )

    def waiting(self) -> int:
        return len(self._due)

    async def failed(
        self,
        run: TrackedRun,
        spec: JobSpec | None,
        error: str,
        pages: int,
        now: datetime,
        *,
        final: bool = False,
    ) -> bool:
        """Record a failed attempt. True when a retry is scheduled, False when it failed for
        good (out of attempts, or `final`: an error no retry can mend, a `fail` rule's)."""
        if run.state is RunState.QUEUED:  # its RunStarted was never seen
            run = await self._states.move(run.run_id, RunState.RUNNING)
        if run.state is not RunState.RUNNING:  # DuckDB holds something newer: that stands
            return False
        retries = spec.retries if spec is not None else None
        if retries is not None and run.attempt < retries.max_attempts and not final:
            policy = RetryPolicy(
                retries.max_attempts,
                retries.backoff.total_seconds(),
                retries.max_backoff.total_seconds(),
            )
            delay = policy.delay(run.attempt, self._rng)
            moved = await self._states.move(run.run_id, RunState.RETRYING, error=error, pages=pages)
            if moved.state is not RunState.RETRYING:
                return False
            self._due[run.run_id] = now + timedelta(seconds=delay)
            log.info(
                "run %s attempt %d failed; retry in %.1fs: %s",
                run.run_id,
                run.attempt,
                delay,
                error,
            )
            return True
        moved = await self._states.move(
            run.run_id, RunState.FAILED, error=error, finished_at=now, rows_loaded=0, pages=pages
        )
        if moved.state is not RunState.FAILED:  # e.g. its commit won the race: no alert
            return False
        log.error(
            "run %s of %s failed for good after %d attempt(s): %s",
            run.run_id,
            run.job,
            run.attempt,
            error,
        )
        if self._gave_up is not None:
            self._gave_up(moved)
        if self._sender is not None and wants(spec, AlertOn.FAILED):  # never blocks us
            self._sender.send(run_failed(run.run_id, run.job, run.attempt, error, now))
        return False

    def alert(self, body: dict[str, object]) -> None:
        """Queue an alert for the webhook, if there is one (it never blocks the Scheduler)."""
        if self._sender is not None:
            self._sender.send(body)

    async def release_due(self, now: datetime) -> list[TrackedRun]:
        """Runs whose backoff is over, moved back to `queued` with the next attempt number."""
        released = []
        for run_id, when in list(self._due.items()):
            if when > now:
                continue
            del self._due[run_id]
            run = self._states.get(run_id)
            if run is None or run.state is not RunState.RETRYING:
                continue  # cancelled meanwhile
            # the failed attempt's error stays in tg.run_logs; the run row shows the current one
            moved = await self._states.move(
                run_id, RunState.QUEUED, attempt=run.attempt + 1, error=None
            )
            if moved.state is RunState.QUEUED:
                released.append(moved)
        return released

    def retry_at(self, run_id: str, when: datetime) -> None:
        """A `retrying` run found in DuckDB (after a restart): its backoff ends at `when`."""
        self._due.setdefault(run_id, when)

    async def drain_alerts(self, timeout: float = 5.0) -> None:
        if self._alerts:
            await asyncio.wait(self._alerts, timeout=timeout)
        if self._sender is not None:
            await self._sender.drain(timeout)

    def forget(self, run_id: str) -> None:
        self._due.pop(run_id, None)
