"""Live Jobs and Runs views, without a server: EventHub.follow (serve/events.py) over a
stand-in broker, the pulses ui.live makes of a follower's events (coalesced, throttled, idle),
the re-read each pulse asks for, and the fallback when the stream fails or ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import gradio as gr
import pytest

from serve import events as ev
from tg_actors.errors import TGError
from tg_actors.messages import JobStale, RunProgressed, RunStateChanged
from tg_actors.runstate import RunState
from ui import live
from ui.jobs import live_tables

FAST = live.Timing(coalesce=0.1, run_gap=0.3, progress=0.4, idle=30.0)
SLACK = 0.03  # timers and task switches: a pulse measured here may look this much early
LINE = "Live updates stopped ({}); refreshing every 2 s instead."


def run_row(state: str) -> dict[str, Any]:
    return {
        "run_id": "r1", "job": "orders", "state": state, "trigger": "manual", "attempt": 1,
        "scheduled_for": None, "queued_at": None, "started_at": None, "finished_at": None,
        "rows_loaded": 0, "pages": 0, "error": None,
    }  # fmt: skip


class LiveApi:
    """The UiApi methods the live views use, in memory; `follow` yields what the test puts in
    `feed` (an exception is raised, None ends it) and records being closed."""

    def __init__(self) -> None:
        self.feed: asyncio.Queue[tuple[str, dict[str, Any]] | Exception | None] = asyncio.Queue()
        self.state = "queued"
        self.reads = 0
        self.followers = 0
        self.closed = 0

    async def follow(self, job: str | None = None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.followers += 1
        try:
            while True:
                item = await self.feed.get()
                if item is None:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed += 1

    def change(self, state: str) -> None:
        """The run moves to `state`, and the status topic says so."""
        self.state = state
        self.feed.put_nowait(("run", {"run_id": "r1", "job": "orders", "state": state}))

    async def list_jobs(self) -> list[dict[str, Any]]:
        return [{"name": "orders", "last_run": run_row(self.state)}]

    async def list_runs(
        self, job: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        self.reads += 1
        return [run_row(self.state)]

    async def list_commands(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return [{"kind": "trigger", "job": "orders", "who": "api", "outcome": "run r1"}]


async def next_within(stream: AsyncIterator[Any], seconds: float) -> Any:
    return await asyncio.wait_for(anext(stream), seconds)


async def nothing_within(stream: AsyncIterator[Any], seconds: float) -> bool:
    """No item comes within `seconds` (the pending `anext` is cancelled: that closes the
    stream, as Gradio's cancelling would)."""
    pending = asyncio.ensure_future(anext(stream))
    done, _ = await asyncio.wait({pending}, timeout=seconds)
    if done:
        return False
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    return True


# --- pulses: when the views are re-read ------------------------------------------------------


async def test_a_burst_of_run_events_is_one_pulse_after_the_coalescing_window() -> None:
    api = LiveApi()
    loop = asyncio.get_running_loop()
    pulses = live.pulses(api, timing=FAST)  # type: ignore[arg-type]
    assert (await next_within(pulses, 1)).kind == "connected"
    start = loop.time()
    for state in ("queued", "running", "running", "succeeded"):
        api.change(state)
    assert (await next_within(pulses, 2)).kind == "change"
    assert loop.time() - start >= FAST.coalesce - SLACK
    assert await nothing_within(pulses, FAST.run_gap + 0.2)  # the four made one pulse
    assert api.closed == 1  # cancelling the pending pulse closed the follower


async def test_the_live_views_reread_after_a_run_event_and_no_more_often_than_the_window() -> None:
    """What the page does: each pulse of follow_status fires the tables' re-read (the
    pulse State's `.change` runs live_tables); a run's life of many events is a few re-reads,
    RUN_GAP apart at least, the last one showing how the run ended."""
    api = LiveApi()
    loop = asyncio.get_running_loop()
    stream = live.follow_status(api, FAST)  # type: ignore[arg-type]
    connected = await next_within(stream, 1)
    assert connected[0] == {"__type__": "update"} and connected[1] is True

    async def a_run() -> None:  # 12 events over ~0.6 s
        for state in ["queued"] + ["running"] * 10 + ["succeeded"]:
            api.change(state)
            await asyncio.sleep(0.05)

    changes = asyncio.create_task(a_run())
    counters: list[int] = []
    times: list[float] = []
    shown: list[str] = []
    while not shown or shown[-1] != "succeeded":
        values = await next_within(stream, 3)
        times.append(loop.time())
        counters.append(values[0])
        job_rows, run_rows, history_rows, caption, status = await live_tables(api, None)  # type: ignore[arg-type]
        shown.append(run_rows[0][2])
        assert job_rows[0][5] == run_rows[0][2] and history_rows[0][2] == "trigger"
        assert status == {"__type__": "update"} and "every job" in caption
    await changes
    assert counters == list(range(1, len(counters) + 1))  # each pulse changes the State
    assert 2 <= len(shown) <= 4 and api.reads == len(shown), shown  # 12 events, few reads
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(gap >= FAST.run_gap - SLACK for gap in gaps), gaps
    await stream.aclose()  # Gradio closes it when the page goes: so is the follower
    assert api.closed == 1


async def test_progress_alone_pulses_at_most_once_per_progress_interval() -> None:
    api = LiveApi()
    loop = asyncio.get_running_loop()
    pulses = live.pulses(api, timing=FAST)  # type: ignore[arg-type]
    assert (await next_within(pulses, 1)).kind == "connected"

    async def progress() -> None:  # every 20 ms for 1.3 s
        for pages in range(65):
            api.feed.put_nowait(("progress", {"run_id": "r1", "job": "orders", "pages": pages}))
            await asyncio.sleep(0.02)

    feeding = asyncio.create_task(progress())
    times = []
    while not feeding.done():
        pulse = await next_within(pulses, 2)
        assert pulse.kind == "progress"
        times.append(loop.time())
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert 2 <= len(times) <= 5 and all(gap >= FAST.progress - SLACK for gap in gaps), gaps
    await pulses.aclose()


async def test_a_state_change_is_not_held_back_by_the_progress_interval() -> None:
    api = LiveApi()
    loop = asyncio.get_running_loop()
    pulses = live.pulses(api, timing=live.Timing(coalesce=0.05, run_gap=0.1, progress=5.0))  # type: ignore[arg-type]
    assert (await next_within(pulses, 1)).kind == "connected"
    api.feed.put_nowait(("progress", {"run_id": "r1", "job": "orders"}))
    assert (await next_within(pulses, 1)).kind == "progress"
    api.feed.put_nowait(("progress", {"run_id": "r1", "job": "orders"}))
    start = loop.time()
    api.change("succeeded")
    assert (await next_within(pulses, 1)).kind == "change"  # long before the 5 s
    assert loop.time() - start < 1.0
    await pulses.aclose()


@pytest.mark.parametrize("event", ["job_stale", "job_recovered", "dropped"])
async def test_other_status_events_and_lost_ones_pulse_as_changes(event: str) -> None:
    api = LiveApi()
    pulses = live.pulses(api, timing=FAST)  # type: ignore[arg-type]
    assert (await next_within(pulses, 1)).kind == "connected"
    api.feed.put_nowait((event, {"job": "orders", "events": 3}))
    assert (await next_within(pulses, 1)).kind == "change"
    await pulses.aclose()


async def test_with_nothing_happening_an_idle_pulse_comes_anyway() -> None:
    api = LiveApi()
    pulses = live.pulses(api, timing=live.Timing(idle=0.2))  # type: ignore[arg-type]
    assert (await next_within(pulses, 1)).kind == "connected"
    assert (await next_within(pulses, 1)).kind == "idle"
    assert (await next_within(pulses, 1)).kind == "idle"
    await pulses.aclose()
    assert api.closed == 1


# --- the fallback: the stream fails or ends ------------------------------------------------


@pytest.mark.parametrize(
    ("last", "why"),
    [
        (TGError("broker gone"), "the event stream failed: Error: broker gone"),
        (ConnectionError("reset"), "the event stream failed: Error (ConnectionError): reset"),
        (None, "the event stream ended"),
    ],
)
async def test_a_stream_that_fails_or_ends_says_so_and_ends_the_generator(
    last: Exception | None, why: str
) -> None:
    api = LiveApi()
    stream = live.follow_status(api, FAST)  # type: ignore[arg-type]
    pulse, following, jobs_timer, runs_timer, *lines = await next_within(stream, 1)
    assert following is True and lines == [{"__type__": "update"}] * 2
    assert isinstance(jobs_timer, gr.Timer) and jobs_timer.active is False  # the live path
    assert isinstance(runs_timer, gr.Timer) and runs_timer.active is False
    api.change("running")
    assert (await next_within(stream, 1))[0] == 1
    api.feed.put_nowait(last)
    pulse, following, jobs_timer, runs_timer, jobs_line, runs_line = await next_within(stream, 1)
    assert following is False and jobs_line == runs_line == LINE.format(why)
    assert pulse == jobs_timer == runs_timer == {"__type__": "update"}
    with pytest.raises(StopAsyncIteration):  # ui.app's next step turns a timer back on
        await next_within(stream, 1)
    assert api.closed == 1


async def test_a_follower_that_cannot_start_falls_back_at_once() -> None:
    class Unreachable(LiveApi):
        async def follow(self, job: str | None = None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
            raise TGError("no broker")
            yield  # pragma: no cover (an async generator that raises on its first anext)

    stream = live.follow_status(Unreachable(), FAST)  # type: ignore[arg-type]
    assert (await next_within(stream, 1))[1] is True
    ended = await next_within(stream, 1)
    assert ended[1] is False and ended[4] == LINE.format(
        "the event stream failed: Error: no broker"
    )


@pytest.mark.parametrize(
    ("shown", "following", "on"),
    [
        ("jobs", True, set()),  # the stream stands in for the Jobs timer
        ("runs", True, set()),
        ("jobs", False, {"jobs"}),  # the stream is down: the timer of the tab shown runs
        ("runs", False, {"runs"}),
        ("charts", True, {"charts"}),  # not followed: as before
        ("engines", False, {"engines"}),
        ("editor", False, set()),  # no timer there
    ],
)
def test_which_timers_run(shown: str, following: bool, on: set[str]) -> None:
    assert live.timers_on(shown, following, ["jobs", "runs", "charts", "engines"]) == on


def test_the_page_starts_the_stream_on_load_and_falls_back_after_it() -> None:
    """build_ui's wiring: a quiet generator on load whose next step (the fallback) turns the
    shown tab's timer on; the pulse re-reads the Jobs tab and the Runs tab; `history` is a
    client endpoint."""
    from ui.app import build_ui

    ui = build_ui(LiveApi())  # type: ignore[arg-type]
    fns = list(ui.fns.values())
    by_name = {fn.name: fn for fn in fns}
    streaming = by_name["go_live"]
    assert streaming.show_progress == "hidden" and streaming.api_visibility == "private"
    assert [t[1] for t in streaming.targets] == ["load"]
    fall_back = by_name["fall_back"]
    assert fall_back.trigger_after == streaming._id and not fall_back.trigger_only_on_success
    pulse_id = streaming.outputs[0]._id
    on_pulse = {fn.name for fn in fns if (pulse_id, "change") in fn.targets}
    assert on_pulse == {"tick", "on_pulse"}
    assert by_name["do_history"].api_name == "history"
    timers = [c for c in fall_back.outputs if isinstance(c, gr.Timer)]
    assert [t.active for t in timers] == [True, False, False, False]  # the page starts polling
    updates: Callable[..., list[Any]] = fall_back.fn  # type: ignore[assignment]
    assert [u.active for u in updates("runs")[:4]] == [False, True, False, False]
    assert updates("runs")[4] is False  # not following any more


# --- EventHub.follow over a stand-in broker --------------------------------------------------


class Method:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.remote = fn


class Broker:
    """The broker actor's subscribe and consume, in memory: consume hands out what the test
    put in `batches`."""

    def __init__(self) -> None:
        self.batches: asyncio.Queue[list[Any]] = asyncio.Queue()
        self.subscribed: list[tuple[str, str, bool]] = []
        self.subscribe = Method(self._subscribe)
        self.consume = Method(self._consume)

    async def _subscribe(self, topic: str, group: str, shared: bool, lossy: bool) -> None:
        self.subscribed.append((topic, group, lossy))

    async def _consume(self, topic: str, group: str, most: int, timeout: float) -> list[Any]:
        try:
            return await asyncio.wait_for(self.batches.get(), 0.05)
        except TimeoutError:
            return []


def changed(state: RunState, job: str = "orders") -> RunStateChanged:
    return RunStateChanged(run_id="r1", job=job, state=state, trigger="manual")


async def stopped(hub: ev.EventHub) -> None:
    hub._stop.set()
    if hub._pump is not None:
        await hub._pump


async def wait_clients(hub: ev.EventHub, count: int) -> None:
    for _ in range(200):
        if hub.clients() == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{hub.clients()} clients, not {count}")


async def test_follow_yields_what_the_stream_sends_as_pairs() -> None:
    broker = Broker()
    hub = ev.EventHub(lambda: broker)
    follower = hub.follow()
    first = asyncio.ensure_future(anext(follower))
    await wait_clients(hub, 1)
    assert set(broker.subscribed) == {("status", ev.GROUP, True)}  # lossy, as for /api/events
    running = changed(RunState.RUNNING)
    progressed = RunProgressed(run_id="r1", job="orders", attempt=1, rows=10, pages=1)
    stale = JobStale(job="orders", last_success_at=None, stale_after_seconds=60)
    broker.batches.put_nowait([running, "not a status event", progressed, stale])
    assert await asyncio.wait_for(first, 2) == ("run", ev.event_data(running))
    assert await next_within(follower, 2) == ("progress", ev.progress_event(progressed))
    assert await next_within(follower, 2) == ("job_stale", ev.job_event(stale))
    await follower.aclose()  # type: ignore[attr-defined]
    assert hub.clients() == 0
    await stopped(hub)


async def test_follow_of_one_job_and_a_cancelled_wait_frees_the_client() -> None:
    broker = Broker()
    hub = ev.EventHub(lambda: broker)
    follower = hub.follow("orders")
    pending = asyncio.ensure_future(anext(follower))
    await wait_clients(hub, 1)
    broker.batches.put_nowait([changed(RunState.QUEUED, "other"), changed(RunState.QUEUED)])
    event, data = await asyncio.wait_for(pending, 2)
    assert (event, data["job"]) == ("run", "orders")
    assert await nothing_within(follower, 0.2)  # cancelling the wait closes the follower
    assert hub.clients() == 0
    await stopped(hub)


async def test_a_slow_follower_loses_its_oldest_events_and_is_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ev, "CLIENT_QUEUE", 2)
    broker = Broker()
    hub = ev.EventHub(lambda: broker)
    follower = hub.follow()
    first = asyncio.ensure_future(anext(follower))
    await wait_clients(hub, 1)
    broker.batches.put_nowait([changed(RunState.QUEUED)])
    assert (await asyncio.wait_for(first, 2))[1]["state"] == "queued"
    states = [RunState.RUNNING, RunState.RUNNING, RunState.RUNNING, RunState.SUCCEEDED]
    broker.batches.put_nowait([changed(state) for state in states])
    await asyncio.sleep(0.2)  # the pump fans out while the follower does not read
    assert await next_within(follower, 2) == ("dropped", {"events": 2})
    assert [(await next_within(follower, 2))[1]["state"] for _ in range(2)] == [
        "running",
        "succeeded",
    ]
    await follower.aclose()  # type: ignore[attr-defined]
    await stopped(hub)


async def test_the_sse_stream_is_unchanged_by_the_refactor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bytes of GET /api/events: the opening lines, an id per event, `dropped` without."""
    monkeypatch.setattr(ev, "CLIENT_QUEUE", 1)
    broker = Broker()
    hub = ev.EventHub(lambda: broker)
    stream = hub.stream()
    assert await next_within(stream, 2) == b"retry: 2000\n: connected\n\n"
    running = changed(RunState.RUNNING)
    broker.batches.put_nowait([running])
    data = (
        '{"run_id":"r1","job":"orders","state":"running","previous":null,'
        f'"trigger":"manual","error":null,"ts":"{running.ts.isoformat()}"}}'
    )
    assert await next_within(stream, 2) == f"id: 1\nevent: run\ndata: {data}\n\n".encode()
    lost, kept = changed(RunState.RUNNING), changed(RunState.SUCCEEDED)
    broker.batches.put_nowait([lost, kept])
    await asyncio.sleep(0.2)
    assert await next_within(stream, 2) == b'event: dropped\ndata: {"events":1}\n\n'
    assert await next_within(stream, 2) == ev.sse("run", ev.event_data(kept), 2)
    await stream.aclose()  # type: ignore[attr-defined]
    assert hub.clients() == 0
    await stopped(hub)


async def test_the_sse_stream_keeps_alive_when_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ev, "KEEPALIVE_S", 0.05)
    hub = ev.EventHub(Broker)
    stream = hub.stream()
    assert await next_within(stream, 2) == b"retry: 2000\n: connected\n\n"
    assert await next_within(stream, 2) == b": keep-alive\n\n"
    await stream.aclose()  # type: ignore[attr-defined]
    await stopped(hub)


class RunsApi(LiveApi):
    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        self.reads += 1
        return run_row(self.state)

    async def run_logs(self, run_id: str) -> list[dict[str, Any]] | None:
        return [{"ts": None, "level": "INFO", "message": f"now {self.state}"}]


async def test_a_pulse_rereads_the_runs_tab_only_while_it_shows() -> None:
    from ui.runs import RunsActions

    api = RunsApi()
    act = RunsActions(api)  # type: ignore[arg-type]
    skip = {"__type__": "update"}
    assert await act.on_pulse("jobs", None, None, "r1", [["run_id", "r1"]]) == (skip,) * 4
    assert api.reads == 0
    shown = [["run_id", "r1"], ["state", "running"]]  # a running run is followed
    api.state = "succeeded"
    table, status, fields, logs = await act.on_pulse("runs", None, None, "r1", shown)
    assert table[0][2] == "succeeded" and status == skip
    assert ["state", "succeeded"] in fields and logs[0][2] == "now succeeded"
    ended = [["run_id", "r1"], ["state", "succeeded"]]  # an ended one is not read again
    assert (await act.on_pulse("runs", None, None, "r1", ended))[2:] == (skip, skip)
