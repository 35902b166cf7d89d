"""Start a full runtime (every actor, no Serve) for one test and wait on its runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray

from tg_actors import runtime
from tg_actors.core.runstate import TERMINAL
from tg_actors.settings import Settings


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


def wait_for_run(rt: runtime.Runtime, run_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = ray.get(rt.db.get_run.remote(run_id))
        if run is not None and run["state"] in TERMINAL:
            return run  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise TimeoutError(f"run {run_id} not finished after {timeout:g}s: {run}")
