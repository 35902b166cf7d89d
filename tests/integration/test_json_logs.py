"""Issue 19 #4: with TG_LOG_FORMAT=json a real local Ray started by runtime.init_ray (as `tg
up` starts it) writes one JSON object per line: the driver's stderr and the log files of an
actor's worker process, a run-state line with run_id/job/state/attempt as fields. Its own
process (a Ray with a LoggingConfig cannot share the test session's Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, logging, os, sys
from tg_actors import logs
from tg_actors.settings import Settings
logs.setup()
logging.getLogger("tg_actors.scheduler.states").info(
    "run_state run_id=%s job=%s from=%s to=%s trigger=%s attempt=%d",
    "drv-1", "orders", "-", "queued", "manual", 1)
import ray
from tg_actors.runtime import init_ray
init_ray(Settings(namespace="tg_json_logs", log_format="json"))

@ray.remote(num_cpus=0)
class Worker:
    def work(self) -> int:
        logging.getLogger("tg_actors.scheduler.states").info(
            "run_state run_id=%s job=%s from=%s to=%s trigger=%s attempt=%d",
            "act-1", "orders", "queued", "running", "manual", 2)
        logging.getLogger("tg_actors.engine").warning("a plain line with %s", "an argument")
        return os.getpid()

pid = ray.get(Worker.remote().work.remote())
node = ray._private.worker.global_worker.node
print(json.dumps({"pid": pid, "logs": node.get_logs_dir_path()}), file=sys.__stdout__)
ray.shutdown()
"""


# markers Ray itself writes into a worker's log files for its log monitor (which strips them
# before forwarding): not log records (ray._private.ray_constants.LOG_PREFIX_*)
RAY_MARKERS = (":job_id:", ":actor_name:", ":task_name:", ":event_summary:", ":info_message:")


def json_lines(text: str) -> list[dict[str, object]]:
    """Every non-empty line parsed: fails on the first line that is not one JSON object."""
    out = []
    for line in text.splitlines():
        if line.strip() and not line.startswith(RAY_MARKERS):
            parsed = json.loads(line)
            assert isinstance(parsed, dict), line
            out.append(parsed)
    return out


def test_actors_and_driver_write_json_lines(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TG_LOG_FORMAT": "json",
        "TG_LOG_LEVEL": "INFO",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    driver = json_lines(done.stderr)  # the driver's own lines and the workers' forwarded
    first = next(d for d in driver if d.get("run_id") == "drv-1")
    assert (first["job"], first["state"], first["attempt"]) == ("orders", "queued", 1)
    worker_files = list(Path(found["logs"]).glob(f"worker-*-{found['pid']}.*"))
    assert worker_files, "no log file of the actor's worker"
    worker = [line for f in worker_files for line in json_lines(f.read_text())]
    state = next(w for w in worker if w.get("run_id") == "act-1")
    assert (state["job"], state["state"], state["attempt"]) == ("orders", "running", 2)
    assert state["message"] == (
        "run_state run_id=act-1 job=orders from=queued to=running trigger=manual attempt=2"
    )
    plain = next(w for w in worker if w.get("message") == "a plain line with an argument")
    assert plain["levelname"] == "WARNING" and "run_id" not in plain
    # forwarded to the driver too, still one object per line (no "(Worker pid=...)" prefix)
    assert any(d.get("run_id") == "act-1" for d in driver)
