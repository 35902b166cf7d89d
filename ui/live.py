"""Live Jobs and Runs views: the `status` topic (UiApi.follow) as pulses that re-read them.

A long-lived generator started on page load follows the topic. It does not re-read the tables
itself: Gradio hands a generator its inputs once, when it starts, so it would never see the
job picked or the Runs tab's filters of later. It yields a *pulse* instead, a counter in a
`gr.State` whose `.change` re-reads the views with the inputs of that moment (ui.app wires
them). A pulse carries no data to the browser, and `.change` runs one re-read at a time
(Gradio's `always_last`), so a browser that reads slowly piles nothing up.

When pulses come (`Timing`): a state change (`run`, `job_stale`, `job_recovered`, or
`dropped`: events were lost, maybe changes) waits COALESCE_S for the ones that come with it,
and pulses are RUN_GAP_S apart at least; `progress` alone pulses at most every PROGRESS_S;
with nothing at all, one every IDLE_S (job edits made elsewhere are not on `status`, and
Gradio notices a closed tab only when the generator yields: then it closes the generator,
which frees its follower). What arrived between pulses is counted, never kept: nothing here
grows with the events.

The 2 s timers of the Jobs and Runs tabs stay off while the stream is connected; if it fails
or ends, `follow_status` says so in the tabs' status lines and ends, and ui.app turns the
timer of the tab shown back on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import gradio as gr

from ui import format as fmt
from ui.api import UiApi

COALESCE_S = 0.15
RUN_GAP_S = 0.3
PROGRESS_S = 1.0
IDLE_S = 10.0
FALLBACK_SECONDS = 2.0  # ui.app's LIVE_SECONDS: what the status line promises

PulseKind = Literal["connected", "change", "progress", "idle", "ended"]


@dataclass(frozen=True, kw_only=True)
class Timing:
    coalesce: float = COALESCE_S
    run_gap: float = RUN_GAP_S
    progress: float = PROGRESS_S
    idle: float = IDLE_S


@dataclass(frozen=True)
class Pulse:
    kind: PulseKind
    detail: str = ""  # why the stream ended (kind "ended")


@dataclass
class Pending:
    """What arrived since the last pulse: counts and the first arrival's time, no events."""

    changes: int = 0
    progress: int = 0
    since: float | None = None

    def note(self, event: str, now: float) -> None:
        if event == "progress":
            self.progress += 1
        else:  # run, job_stale, job_recovered, dropped: the views may have changed
            self.changes += 1
        if self.since is None:
            self.since = now

    def due(
        self, last: float | None, quiet_since: float, timing: Timing
    ) -> tuple[float, PulseKind]:
        """When the next pulse is due (loop time), and its kind. `last`: the previous re-read's
        pulse (None: none yet, no gap to keep); `quiet_since`: the previous pulse of any kind
        (`connected` too), for the idle one."""
        spaced_from = -math.inf if last is None else last
        if self.changes and self.since is not None:
            return max(self.since + timing.coalesce, spaced_from + timing.run_gap), "change"
        if self.progress and self.since is not None:
            return max(self.since, spaced_from + timing.progress), "progress"
        return quiet_since + timing.idle, "idle"

    def clear(self) -> None:
        self.changes = self.progress = 0
        self.since = None


async def pulses(
    api: UiApi, job: str | None = None, timing: Timing | None = None
) -> AsyncGenerator[Pulse, None]:
    """`connected` first, then a pulse each time the views should be re-read (see the module
    docstring), until the follower fails or ends: then one `ended` pulse saying why, and the
    iterator ends. Closing the iterator closes the follower."""
    timing = timing or Timing()
    loop = asyncio.get_running_loop()
    pending = Pending()
    wake = asyncio.Event()

    async def read() -> None:
        try:
            async for event, _ in api.follow(job):
                pending.note(event, loop.time())
                wake.set()
        finally:
            wake.set()

    reader = asyncio.create_task(read())
    try:
        yield Pulse("connected")
        quiet_since = loop.time()
        last: float | None = None
        while True:
            if reader.done():
                yield Pulse("ended", ended_because(reader))
                return
            due, kind = pending.due(last, quiet_since, timing)
            now = loop.time()
            if due <= now:
                pending.clear()
                last = quiet_since = now
                yield Pulse(kind)
                continue
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), due - now)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader


def ended_because(reader: asyncio.Task[None]) -> str:
    """Why the follower stopped, for the status line."""
    if reader.cancelled():
        return "the event stream was cancelled"
    exc = reader.exception()
    if exc is None:
        return "the event stream ended"
    return f"the event stream failed: {fmt.describe_error(exc)}"


def stopped_line(detail: str) -> str:
    return f"Live updates stopped ({detail}); refreshing every {FALLBACK_SECONDS:g} s instead."


async def follow_status(
    api: UiApi, timing: Timing | None = None
) -> AsyncGenerator[tuple[Any, Any, Any, Any, Any, Any], None]:
    """Page load, a generator: (pulse, live, Jobs timer, Runs timer, Jobs status, Runs
    status). Connected: live, both timers off; each pulse: the counter, one up; ended: not
    live, both status lines say why (ui.app's next step turns the shown tab's timer on)."""
    count = 0
    skip = gr.skip
    async with contextlib.aclosing(pulses(api, timing=timing)) as feed:  # closed with this
        async for pulse in feed:
            if pulse.kind == "connected":
                timers_off = gr.Timer(active=False), gr.Timer(active=False)
                yield skip(), True, *timers_off, skip(), skip()
            elif pulse.kind == "ended":
                line = stopped_line(pulse.detail)
                yield skip(), False, skip(), skip(), line, line
            else:
                count += 1
                yield count, skip(), skip(), skip(), skip(), skip()


FOLLOWED = frozenset({"jobs", "runs"})  # the tabs whose timers the stream stands in for


def timers_on(shown: str, following: bool, timed: Iterable[str]) -> set[str]:
    """The tabs whose timers run: the shown tab's, if it has one (`timed`), unless the stream
    is connected (`following`) and follows that tab."""
    if shown not in set(timed) or (following and shown in FOLLOWED):
        return set()
    return {shown}
