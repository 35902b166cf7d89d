"""`GET /api/events`: run state changes as server-sent events.

The Serve replica consumes the `status` topic in its own lossy consumer group ("api-events":
when nobody reads fast enough the oldest events are dropped, the system never waits for a
browser) and fans each RunStateChanged (event `run`), RunProgressed (`progress`: rows and pages
so far, for `tg trigger --wait`'s progress line), JobStale (`job_stale`) and JobRecovered
(`job_recovered`) out to the connected clients, each with a bounded queue of its own (a slow client loses its oldest events, and is told so). The stream's first line,
`: connected`, comes once the group is subscribed: from then on no event is missed.
`EventHub.follow` gives the same events as (event, data) pairs, for the UI's live views.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from tg_actors.broker.client import BrokerClient
from tg_actors.messages import (
    TOPIC_STATUS,
    JobRecovered,
    JobStale,
    RunProgressed,
    RunStateChanged,
)

log = logging.getLogger(__name__)
GROUP = "api-events"
KEEPALIVE_S = 15.0
CLIENT_QUEUE = 1000
SUBSCRIBE_S = 5.0


def event_data(message: RunStateChanged) -> dict[str, Any]:
    return {
        "run_id": message.run_id,
        "job": message.job,
        "state": message.state.value,
        "previous": None if message.previous is None else message.previous.value,
        "trigger": str(message.trigger),
        "error": message.error,
        "ts": message.ts.isoformat(),
    }


def progress_event(message: RunProgressed) -> dict[str, Any]:
    """The data of a `progress` event: a running attempt's rows and pages so far."""
    return {
        "run_id": message.run_id,
        "job": message.job,
        "attempt": message.attempt,
        "rows": message.rows,
        "pages": message.pages,
        "ts": message.ts.isoformat(),
    }


def job_event(message: JobStale | JobRecovered) -> dict[str, Any]:
    """The data of a `job_stale` / `job_recovered` event."""
    if isinstance(message, JobStale):
        last = message.last_success_at
        return {
            "job": message.job,
            "last_success_at": None if last is None else last.isoformat(),
            "stale_after_seconds": message.stale_after_seconds,
            "ts": message.ts.isoformat(),
        }
    return {
        "job": message.job,
        "run_id": message.run_id,
        "was": message.was,
        "ts": message.ts.isoformat(),
    }


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Client:
    def __init__(self, job: str | None) -> None:
        self.job = job
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(CLIENT_QUEUE)
        self.dropped = 0

    def offer(self, data: dict[str, Any], event: str = "run") -> None:
        if self.job is not None and data["job"] != self.job:
            return
        if self.queue.full():  # a slow reader loses its oldest event, not the others' events
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait((event, data))

    async def next(self, timeout: float | None = None) -> list[tuple[str, dict[str, Any]]]:
        """The next event, after a `dropped` one ({"events": n}) when n were lost since the
        last; TimeoutError when none comes in `timeout` s (None: wait for one)."""
        event, data = await asyncio.wait_for(self.queue.get(), timeout)
        if not self.dropped:
            return [(event, data)]
        lost, self.dropped = self.dropped, 0
        return [("dropped", {"events": lost}), (event, data)]


class EventHub:
    def __init__(self, broker: Callable[[], Any]) -> None:
        self._broker = broker  # the handle, looked up when the first client comes
        self._clients: set[Client] = set()
        self._pump: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._seq = 0

    async def _ensure_pump(self) -> None:
        """Start the pump once, after its group exists on the broker: a client told
        `: connected` misses no event published from then on. A broker that does not answer
        in SUBSCRIBE_S is not waited out here (the pump joins as soon as it answers)."""
        if self._pump is None or self._pump.done():
            client = BrokerClient(self._broker())
            try:
                await asyncio.wait_for(
                    client.subscribe(TOPIC_STATUS, GROUP, lossy=True), SUBSCRIBE_S
                )
            except Exception:
                log.warning("events: broker not answering; the stream opens without it yet")
            if self._pump is None or self._pump.done():  # another client may have started it
                self._pump = asyncio.create_task(
                    client.pump_batches(TOPIC_STATUS, GROUP, self._fan_out, self._stop, lossy=True)
                )

    async def _fan_out(self, messages: list[Any]) -> None:
        for message in messages:
            if isinstance(message, RunStateChanged):
                event, data = "run", event_data(message)
            elif isinstance(message, RunProgressed):
                event, data = "progress", progress_event(message)
            elif isinstance(message, JobStale | JobRecovered):
                event, data = message.kind, job_event(message)
            else:
                continue
            for client in list(self._clients):
                client.offer(data, event)

    @asynccontextmanager
    async def _joined(self, job: str | None) -> AsyncIterator[Client]:
        """A client fed from now on (the pump subscribed first), until the block is left."""
        await self._ensure_pump()
        client = Client(job)
        self._clients.add(client)
        try:
            yield client
        finally:
            self._clients.discard(client)

    async def stream(self, job: str | None = None) -> AsyncIterator[bytes]:
        """The bytes of one client's event stream, until it disconnects."""
        async with self._joined(job) as client:
            yield b"retry: 2000\n: connected\n\n"
            while True:
                try:
                    events = await client.next(KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                for event, data in events:
                    if event == "dropped":
                        yield sse(event, data)
                        continue
                    self._seq += 1
                    yield sse(event, data, self._seq)

    async def follow(self, job: str | None = None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """One client's events as (event, data), as `stream` sends them (`run`, `progress`,
        `job_stale`, `job_recovered`, and `dropped` {"events": n} when its bounded queue lost
        n), optionally one job's, until the iterator is closed. Nothing is buffered past the
        client's queue: a caller that stops reading loses its oldest events, never holds the
        others up. The client joins at the first `anext` (once the pump is subscribed, as
        `stream`'s `: connected`); closing the iterator (aclose, or cancelling its `anext`)
        removes it."""
        async with self._joined(job) as client:
            while True:
                for pair in await client.next():
                    yield pair

    def clients(self) -> int:
        return len(self._clients)
