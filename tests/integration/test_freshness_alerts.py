"""Freshness alerts through the whole system: a job with `alerts.stale_after: 2s` that has not
succeeded goes stale (one `job_stale` POSTed to a real receiver on 127.0.0.1, one `job_stale`
event on the status topic and /api/events, `tg_job_stale 1` in /metrics), stays stale without
repeating on every tick, and its next success recovers it once (`job_recovered`). A warn check
that does not pass is a `check_failed` alert and counts in `tg_checks_failed_total`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
import ray
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serve.service import ApiService
from tests.kit.jobs import write_job
from tests.kit.ray import running_system, wait_for_run
from tests.kit.servers import Receiver, serve_app

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


async def items(request: Request) -> JSONResponse:
    return JSONResponse({"data": [{"id": 1}, {"id": 2}]})


def fails_first() -> Callable[[Request], Awaitable[JSONResponse]]:
    """`/flaky`: 400 the first time, then the items."""
    calls = [0]

    async def flaky(request: Request) -> JSONResponse:
        calls[0] += 1
        if calls[0] == 1:
            return JSONResponse({"detail": "not yet"}, status_code=400)
        return await items(request)

    return flaky


def source_and_hook(hook: Receiver) -> Starlette:
    return Starlette(
        routes=[
            Route("/items", items),
            Route("/flaky", fails_first()),
            Route("/hook/{secret}", hook.hook, methods=["POST"]),
        ]
    )


JOB = """name: fresh
alerts: {{stale_after: 2s}}
source: {{url: '{base}/items', records: '$.data'}}
destination: {{table: fresh}}
checks:
  - {{name: too_few, sql: "SELECT count(*) >= 1000 FROM records", on_fail: warn}}
"""
# a `fail` check: the run fails on it (run_failed and check_failed, the defaults)
STRICT = """name: strict
source: {{url: '{base}/items', records: '$.data'}}
destination: {{table: strict}}
checks:
  - {{name: at_least_1000, sql: "SELECT count(*) >= 1000 FROM records", on_fail: fail}}
"""
# fails for good once, then succeeds: with `on: [recovered]` only job_recovered is POSTed
FLAKY = """name: flaky
alerts: {{'on': [recovered]}}  # quoted: YAML 1.1 reads a bare on as true
retries: {{max_attempts: 1}}
source: {{url: '{base}/flaky', records: '$.data'}}
destination: {{table: flaky}}
"""


async def next_event(stream: AsyncIterator[bytes], timeout: float) -> tuple[str, dict[str, Any]]:
    """The next `event:` of the SSE byte stream (comments and keep-alives skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        chunk = await asyncio.wait_for(anext(stream), max(0.1, deadline - time.monotonic()))
        fields = dict(line.split(": ", 1) for line in chunk.decode().splitlines() if ": " in line)
        if "event" in fields:
            return fields["event"], json.loads(fields["data"])


def of(hook: Receiver, job: str) -> list[dict[str, Any]]:
    """The alerts POSTed about `job`, in order."""
    return [b for b in hook.bodies if b.get("job") == job]


async def wait_bodies(hook: Receiver, event: str, timeout: float) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [b for b in of(hook, "fresh") if b.get("event") == event]
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event} alert within {timeout:g}s: {hook.bodies}")


def test_a_stale_job_alerts_once_and_recovers_once(tmp_path: Path, namespace: str) -> None:
    hook = Receiver()
    with serve_app(source_and_hook(hook)) as base:
        for name, text in (("fresh", JOB), ("strict", STRICT), ("flaky", FLAKY)):
            write_job(tmp_path / "configs", name, text.format(base=base))
        url = f"{base}/hook/secret"
        with running_system(tmp_path, namespace, engines=1, alert_webhook_url=url) as rt:
            api = ApiService(namespace)

            async def run(job: str) -> dict[str, Any]:
                run_id = await rt.scheduler.trigger.remote(job)
                return await asyncio.to_thread(wait_for_run, rt, run_id, 60)

            async def go() -> tuple[str, str, str, str]:
                stream = cast(AsyncGenerator[bytes, None], api.events.stream("fresh"))
                assert await anext(stream) == b"retry: 2000\n: connected\n\n"
                # while `fresh` waits out its 2s: the other two jobs' runs
                assert (await run("strict"))["state"] == "failed"
                assert (await run("flaky"))["state"] == "failed"
                flaky = await run("flaky")
                assert flaky["state"] == "succeeded", flaky["error"]
                # never succeeded: stale 2s after the Scheduler learned of the job
                event, data = await next_event(stream, 20)
                assert event == "job_stale", (event, data)
                assert data["job"] == "fresh" and data["last_success_at"] is None
                assert data["stale_after_seconds"] == 2.0
                await wait_bodies(hook, "job_stale", 10)
                stale_metrics = await api.metrics()
                await asyncio.sleep(1.0)  # twenty ticks more: still one job_stale
                assert [b["event"] for b in of(hook, "fresh")] == ["job_stale"]
                # a success recovers it, once
                fresh = await run("fresh")
                assert fresh["state"] == "succeeded", fresh["error"]
                run_id = fresh["run_id"]
                while True:
                    event, data = await next_event(stream, 20)
                    if event == "job_recovered":
                        break
                    assert event == "run", (event, data)  # its run's state changes
                assert (data["job"], data["run_id"], data["was"]) == ("fresh", run_id, "stale")
                await wait_bodies(hook, "job_recovered", 10)
                await stream.aclose()
                return stale_metrics, await api.metrics(), str(run_id), str(flaky["run_id"])

            stale_metrics, metrics, run_id, flaky_id = asyncio.run(go())
            ray.get(rt.scheduler.stop.remote(10), timeout=60)  # every queued alert delivered
    assert 'tg_job_stale{tg_job="fresh"} 1.0' in stale_metrics
    assert 'tg_job_last_success_timestamp_seconds{tg_job="fresh"}' not in stale_metrics
    assert 'tg_job_stale{tg_job="fresh"} 0.0' in metrics
    assert 'tg_job_last_success_timestamp_seconds{tg_job="fresh"} ' in metrics
    assert 'tg_checks_failed_total{tg_job="fresh"} 1' in metrics
    assert 'tg_checks_failed_total{tg_job="strict"} 1' in metrics
    assert 'tg_job_stale{tg_job="strict"}' not in metrics  # no stale_after: no such line
    # strict (no `alerts:`): the run failed for good and the check it failed on
    assert sorted(b["event"] for b in of(hook, "strict")) == ["check_failed", "run_failed"]
    (strict_checks,) = [b for b in of(hook, "strict") if b["event"] == "check_failed"]
    assert strict_checks["checks"] == ["at_least_1000"]
    # flaky (`on: [recovered]`): no run_failed, one job_recovered from the failure
    (back,) = of(hook, "flaky")
    assert (back["event"], back["was"], back["run_id"]) == ("job_recovered", "failed", flaky_id)
    events = [b["event"] for b in of(hook, "fresh")]
    # the success's check_failed and job_recovered (in either order); a second job_stale may
    # follow once 2s pass after the success: a new stale period, not a repeat
    assert events[0] == "job_stale" and events.count("job_recovered") == 1, events
    assert events.count("check_failed") == 1 and events.count("job_stale") <= 2, events
    (recovered,) = [b for b in of(hook, "fresh") if b["event"] == "job_recovered"]
    assert (recovered["job"], recovered["run_id"], recovered["was"]) == ("fresh", run_id, "stale")
    (checked,) = [b for b in of(hook, "fresh") if b["event"] == "check_failed"]
    assert checked["job"] == "fresh" and checked["checks"] == ["too_few"]
    assert checked["run_id"] == run_id
