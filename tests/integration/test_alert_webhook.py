"""The alert webhook through the whole system: TG_ALERT_WEBHOOK_URL set, a run that fails for
good is POSTed once to a real receiver on 127.0.0.1 (its retried attempt is not)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import ray

from tests.kit.jobs import write_job
from tests.kit.ray import poll_until, running_system, wait_for_run
from tests.kit.servers import Receiver, serve_app

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


def test_a_run_failed_for_good_is_posted_once(tmp_path: Path, namespace: str) -> None:
    hook = Receiver()
    with serve_app(hook.app()) as base:
        # nothing listens on port 9: every attempt fails at once
        write_job(
            tmp_path / "configs",
            "doomed",
            "name: doomed\n"
            "retries: {max_attempts: 2, backoff: 100ms, max_backoff: 200ms}\n"
            "source: {url: 'http://127.0.0.1:9/x', timeout: 2s}\n"
            "destination: {table: doomed}\n",
        )
        url = f"{base}/hook/secret"
        with running_system(tmp_path, namespace, engines=1, alert_webhook_url=url) as rt:
            run_id = ray.get(rt.scheduler.trigger.remote("doomed"))
            run = wait_for_run(rt, run_id, timeout=120)
            assert run["state"] == "failed" and run["attempt"] == 2
            poll_until("the alert to be POSTed", lambda: hook.bodies or None, 30, every=0.1)
            # the Scheduler's stop waits until every alert it has queued is delivered: once it
            # returns, a second POST (there must be none) is in hook.bodies; no window to wait
            ray.get(rt.scheduler.stop.remote(10), timeout=60)
    bodies: list[Any] = hook.bodies
    assert len(bodies) == 1, bodies
    alert = bodies[0]
    assert {k: alert[k] for k in ("event", "run_id", "job", "attempt")} == {
        "event": "run_failed",
        "run_id": run_id,
        "job": "doomed",
        "attempt": 2,
    }
    assert alert["error"] == run["error"] and alert["finished_at"]
