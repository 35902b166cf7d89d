"""For tests on a real local Ray: start a full runtime (every actor, no Serve) for one test,
poll with a deadline, and wait on its runs (ended, in a state) and on idle engines."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import ray

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


def wait_idle(rt: runtime.Runtime, timeout: float = 15.0) -> dict[str, Any]:
    """Scheduler status once no engine is busy (the end events follow the commit closely)."""

    def idle() -> dict[str, Any] | None:
        status: dict[str, Any] = ray.get(rt.scheduler.status.remote())
        return status if status["running"] == 0 else None

    return poll_until("engines to be idle", idle, timeout)
