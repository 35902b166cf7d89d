"""`tg run JOB`: trigger one run through the real actors and wait for its end state."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ray

from tg_actors.cli.local_server import ThreadedServer, port_is_free
from tg_actors.messages import TOPIC_STATUS, RunProgressed, RunStateChanged
from tg_actors.names import CLI_GROUP
from tg_actors.runstate import TERMINAL
from tg_actors.runtime import Runtime, resolve
from tg_actors.settings import Settings

GROUP = CLI_GROUP


def serve_demo_if_free(settings: Settings) -> ThreadedServer | None:
    """Serve the offline demo source at the address the shipped jobs use, if nothing is there."""
    if not port_is_free(settings.host, settings.port):
        return None
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from demo.app import build_demo_app

    app = Starlette(routes=[Mount("/demo", app=build_demo_app())])
    return ThreadedServer(app, settings.host, settings.port).start()


def run_once(
    rt: Runtime,
    job: str,
    timeout: float = 3600.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any] | None:
    """Run `job` once; the final run row, or None when there is no such job. `on_progress`
    gets (rows, pages) of each RunProgressed of the run on the status topic."""
    names = {j["name"] for j in ray.get(rt.db.list_jobs.remote())}
    if job not in names:
        return None
    ray.get(rt.broker.subscribe.remote(TOPIC_STATUS, GROUP))
    run_id = resolve(rt.scheduler.trigger.remote(job))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in ray.get(rt.broker.consume.remote(TOPIC_STATUS, GROUP, 500, 1.0)):
            if on_progress and isinstance(message, RunProgressed) and message.run_id == run_id:
                on_progress(message.rows, message.pages)
            if (
                isinstance(message, RunStateChanged)
                and message.run_id == run_id
                and message.state in TERMINAL
            ):
                return ray.get(rt.db.get_run.remote(run_id))  # type: ignore[no-any-return]
    raise TimeoutError(f"run {run_id} of {job} did not finish within {timeout:g}s")
