"""The alert webhook: a run failed for good is POSTed as JSON to `TG_ALERT_WEBHOOK_URL`.

`AlertSender.send` never blocks its caller (the Scheduler's event loop): it queues the alert
and returns; one background task POSTs the queue in order, each alert retried with bounded
exponential backoff on connection errors, timeouts, 408, 429 and 5xx (a 4xx is the
receiver refusing it: not retried). At most `max_pending` alerts wait; past that the oldest
is dropped with a warning. A failing webhook is logged (its URL reduced to scheme, host and
port: webhook URLs carry their secret in the path) and never raised. `drain` waits for the
queue to empty, bounded, for a stop or a test. Sleep and clock are injectable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger(__name__)

RETRIED_STATUS = frozenset({408, 429})  # and every 5xx


def run_failed(
    run_id: str, job: str, attempt: int, error: str, finished_at: datetime
) -> dict[str, Any]:
    """The body of the `run_failed` alert."""
    return {
        "event": "run_failed",
        "run_id": run_id,
        "job": job,
        "attempt": attempt,
        "error": error,
        "finished_at": finished_at.isoformat(),
    }


def job_stale(job: str, last_success_at: datetime | None, stale_after: float) -> dict[str, Any]:
    """The body of the `job_stale` alert: no success for `stale_after` seconds."""
    return {
        "event": "job_stale",
        "job": job,
        "last_success_at": None if last_success_at is None else last_success_at.isoformat(),
        "stale_after_seconds": stale_after,
    }


def job_recovered(job: str, run_id: str, was: str, at: datetime) -> dict[str, Any]:
    """The body of the `job_recovered` alert: the first success after `was` (stale, failed)."""
    return {
        "event": "job_recovered",
        "job": job,
        "run_id": run_id,
        "was": was,
        "at": at.isoformat(),
    }


def check_failed(run_id: str, job: str, checks: list[str], at: datetime) -> dict[str, Any]:
    """The body of the `check_failed` alert: the run's checks that did not pass."""
    return {
        "event": "check_failed",
        "run_id": run_id,
        "job": job,
        "checks": checks,
        "at": at.isoformat(),
    }


def slack(alert: dict[str, Any]) -> dict[str, Any]:
    """`alert` as a Slack incoming-webhook body (TG_ALERT_FORMAT=slack): one readable line in
    `text`, the fields kept in a section's mrkdwn."""
    event, job = alert.get("event", "alert"), alert.get("job", "?")
    if event == "run_failed":
        text = f"turbo-giggle: run {alert.get('run_id')} of {job} failed: {alert.get('error')}"
    elif event == "job_stale":
        last = alert.get("last_success_at") or "never"
        text = f"turbo-giggle: {job} is stale: no successful run since {last}"
    elif event == "job_recovered":
        text = f"turbo-giggle: {job} recovered (was {alert.get('was')}): run {alert.get('run_id')}"
    elif event == "check_failed":
        text = f"turbo-giggle: checks of {job} did not pass: {', '.join(alert.get('checks', []))}"
    else:
        text = f"turbo-giggle: {event} ({job})"
    fields = "\n".join(f"*{k}*: {v}" for k, v in alert.items())
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": fields}}],
    }


def webhook_for_logs(url: str) -> str:
    """scheme://host:port, with `/***` when the URL had a path or query (its secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    rest = "/***" if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{rest}"


class AlertSender:
    def __init__(
        self,
        url: str,
        *,
        tries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_elapsed: float = 300.0,
        max_pending: int = 100,
        timeout: float = 5.0,
        format: str = "json",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._where = webhook_for_logs(url)
        self._tries = max(1, tries)
        self._backoff, self._max_backoff = backoff, max_backoff
        self._max_elapsed = max_elapsed  # per alert: no retry starts past this
        self._max_pending = max(1, max_pending)
        self._timeout = timeout
        self._slack = format == "slack"
        self._sleep, self._clock = sleep, clock
        self._pending: deque[dict[str, Any]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self.sent = 0  # delivered
        self.failed = 0  # given up on
        self.dropped = 0  # pushed out of a full queue

    def send(self, alert: dict[str, Any]) -> None:
        """Queue `alert` and return at once (call it from the running event loop)."""
        if len(self._pending) >= self._max_pending:
            oldest = self._pending.popleft()
            self.dropped += 1
            log.warning(
                "alert webhook %s: %d alerts pending, dropped the oldest (run %s)",
                self._where,
                self._max_pending,
                oldest.get("run_id"),
            )
        self._pending.append(alert)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

    def pending(self) -> int:
        return len(self._pending)

    async def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued alert is delivered or given up on, at most `timeout`
        seconds. True when nothing is left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (worker := self._worker) is not None and not worker.done():
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.wait({worker}, timeout=left)
        return not self._pending

    def close(self) -> None:
        """Stop sending (what is still queued is dropped)."""
        if self._worker is not None:
            self._worker.cancel()
        self._pending.clear()

    async def _work(self) -> None:
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            while self._pending:
                alert = self._pending.popleft()
                try:
                    await self._deliver(client, alert)
                except Exception:  # an alert must never take the sender down
                    self.failed += 1
                    log.warning("alert webhook %s: alert not sent", self._where, exc_info=True)
        if self._pending:  # queued while the client closed: carry on in a new task
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _deliver(self, client: httpx.AsyncClient, alert: dict[str, Any]) -> None:
        deadline = self._clock() + self._max_elapsed
        reason = ""
        for attempt in range(1, self._tries + 1):
            try:
                response = await client.post(self._url, json=slack(alert) if self._slack else alert)
            except httpx.HTTPError as exc:
                reason, retry = f"{type(exc).__name__}: {exc}", True
            else:
                if response.is_success:
                    self.sent += 1
                    return
                status = response.status_code
                reason, retry = f"HTTP {status}", status >= 500 or status in RETRIED_STATUS
            reason = reason.replace(self._url, self._where)
            delay = min(self._max_backoff, self._backoff * 2 ** (attempt - 1))
            if not retry or attempt == self._tries or self._clock() + delay > deadline:
                break
            log.info(
                "alert webhook %s: try %d failed (%s); again in %.1fs",
                self._where,
                attempt,
                reason,
                delay,
            )
            await self._sleep(delay)
        self.failed += 1
        log.warning(
            "alert webhook %s failed for run %s after %d tries: %s",
            self._where,
            alert.get("run_id"),
            attempt,
            reason,
        )
