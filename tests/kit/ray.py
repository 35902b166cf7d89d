"""For tests on a real local Ray: start a full runtime (every actor; with the Serve app on a
free loopback port: `serving`) for one test,
poll with a deadline, and wait on its runs (ended, in a state, enough of them), on idle
engines, on an actor that is up again, and on a paused job whose runs have all ended.

Tests wait for conditions, never for a window of wall time: on a loaded machine a window
holds fewer runs than on an idle one, and a condition holds the same."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import ray

from tests.kit.cli import free_port
from tests.kit.jobs import write_job
from tg_actors import runtime
from tg_actors.runstate import TERMINAL
from tg_actors.settings import Settings

T = TypeVar("T")


@contextmanager
def running_system(
    tmp_path: Path,
    namespace: str,
    *,
    engines: int = 2,
    schedules: bool = True,
    **overrides: Any,
) -> Iterator[runtime.Runtime]:
    settings = Settings(
        configs=tmp_path / "configs",
        db_path=tmp_path / "data" / "sync_test.duckdb",
        namespace=namespace,
        engines=engines,
        tick_seconds=0.05,
        **overrides,
    )
    rt = runtime.start(settings, schedules=schedules, serve_app=False)
    try:
        yield rt
    finally:
        runtime.stop(rt)


@contextmanager
def serving(
    tmp_path: Path,
    token: str,
    *,
    port: int | None = None,
    engines: int = 1,
    schedules: bool = True,
) -> Iterator[tuple[str, runtime.Runtime]]:
    """`running_system` with the Serve app on 127.0.0.1:`port` (a free one by default), its API
    token `token`: (base URL, Runtime). A job reading the app's own /demo source needs the
    port before the system starts: take one with `free_port()` and pass it."""
    port = port or free_port()
    namespace = f"t_{uuid.uuid4().hex[:8]}"
    with running_system(tmp_path, namespace, engines=engines, schedules=schedules) as rt:
        rt.settings = rt.settings.model_copy(update={"port": port, "api_token": token})
        runtime.start_serve(rt)
        yield f"http://127.0.0.1:{port}", rt


DEMO_ROWS = 2500  # the orders of the demo source the Serve app mounts at /demo


def write_demo_job(configs: Path, port: int) -> None:
    """The job `demo`: the demo source of the Serve app on `port`, merged into table demo."""
    write_job(
        configs,
        "demo",
        f"""
name: demo
source:
  url: http://127.0.0.1:{port}/demo/orders
  params: {{per_page: 1000}}
  records: "$.data"
  paginate: {{type: page}}
destination: {{table: demo, write: merge, primary_key: [id]}}
""",
    )


@contextmanager
def serving_demo(tmp_path: Path, token: str) -> Iterator[tuple[str, runtime.Runtime]]:
    """`serving` (no schedules) with the job `demo` synced once: its DEMO_ROWS rows are in
    table demo before the tests begin. (base URL, Runtime)."""
    port = free_port()
    write_demo_job(tmp_path / "configs", port)
    auth = {"Authorization": f"Bearer {token}"}
    with serving(tmp_path, token, port=port, schedules=False) as (url, rt):
        with httpx.Client(base_url=url, timeout=60) as client:
            poll_until("the API", lambda: _healthy(client), 120, every=0.5)
            run_id = client.post("/api/jobs/demo/runs", headers=auth).json()["run_id"]
            run = wait_for_run(rt, run_id)
            assert run["state"] == "succeeded", run
        yield url, rt


def _healthy(client: httpx.Client) -> bool | None:
    try:
        return True if client.get("/api/health").json()["status"] == "ok" else None
    except (httpx.HTTPError, ValueError):
        return None


def poll_until(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.05) -> T:
    """`check()` until it returns something other than None; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(every)


def wait_for_run(rt: runtime.Runtime, run_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """The run once it has ended (any terminal state)."""

    def ended() -> dict[str, Any] | None:
        run = ray.get(rt.db.get_run.remote(run_id))
        return run if run is not None and run["state"] in TERMINAL else None

    return poll_until(f"run {run_id} to end", ended, timeout, every=0.1)


def wait_state(rt: runtime.Runtime, run_id: str, state: str, timeout: float = 30.0) -> None:
    def reached() -> bool | None:
        run = ray.get(rt.db.get_run.remote(run_id))
        return True if run and run["state"] == state else None

    poll_until(f"run {run_id} to be {state}", reached, timeout)


def runs_of(rt: runtime.Runtime, job: str) -> list[dict[str, Any]]:
    """Every run of `job` in tg.runs (newest first)."""
    runs: list[dict[str, Any]] = ray.get(rt.db.list_runs.remote(job=job, limit=100_000))
    return runs


def wait_runs(
    rt: runtime.Runtime,
    job: str,
    what: str,
    enough: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 120.0,
) -> list[dict[str, Any]]:
    """The runs of `job` once `enough(runs)` holds."""

    def check() -> list[dict[str, Any]] | None:
        runs = runs_of(rt, job)
        return runs if enough(runs) else None

    return poll_until(f"{job}: {what}", check, timeout, every=0.1)


def pause(rt: runtime.Runtime, job: str, timeout: float = 60.0) -> float:
    """Pause `job` and wait until the Scheduler has heard it (from then on it fires no tick of
    it). Returns the wall time (time.time()) at which the pause was stored and announced."""
    ray.get(rt.config.set_paused.remote(job, True), timeout=timeout)
    paused_at = time.time()

    def heard() -> bool | None:
        status = ray.get(rt.scheduler.job_status.remote(job), timeout=timeout)
        return True if status[job]["paused"] else None

    poll_until(f"the scheduler to hear that {job} is paused", heard, timeout)
    return paused_at


def drained(rt: runtime.Runtime, job: str, timeout: float = 120.0) -> list[dict[str, Any]]:
    """The runs of a paused `job` once none is open (queued, running, retrying): final."""
    return wait_runs(
        rt, job, "every run to end", lambda runs: all(r["state"] in TERMINAL for r in runs), timeout
    )


def wait_ready(actor: Any, timeout: float = 60.0) -> None:
    """Until the actor's ping answers "ok" (booted: after a restart, its state reloaded)."""

    def ready() -> bool | None:
        try:
            return True if ray.get(actor.ping.remote(), timeout=5) == "ok" else None
        except Exception:  # still restarting
            return None

    poll_until("the actor to answer ping", ready, timeout, every=0.1)


def wait_idle(rt: runtime.Runtime, timeout: float = 15.0) -> dict[str, Any]:
    """Scheduler status once no engine is busy (the end events follow the commit closely)."""

    def idle() -> dict[str, Any] | None:
        status: dict[str, Any] = ray.get(rt.scheduler.status.remote())
        return status if status["running"] == 0 else None

    return poll_until("engines to be idle", idle, timeout)
