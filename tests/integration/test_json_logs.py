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

from tests.kit.cli import free_port

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


def run_json_logged(
    script: str, args: list[str], cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """`script` in a fresh interpreter with TG_LOG_FORMAT=json (its own local Ray); it must
    exit 0."""
    env = {**os.environ, "TG_LOG_FORMAT": "json", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **env}
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_actors_and_driver_write_json_lines(tmp_path: Path) -> None:
    done = run_json_logged(SCRIPT, [], tmp_path, TG_LOG_LEVEL="INFO")
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


SERVE_SCRIPT = r"""
import json, sys, time
import httpx, ray
from ray import serve
from tg_actors import logs, runtime
from tg_actors.settings import Settings
settings = Settings(
    namespace="tg_json_serve", log_format="json", host="127.0.0.1", port=int(sys.argv[1]),
    db_path=sys.argv[2], configs=sys.argv[3], api_token="k" * 40,
)
logs.setup()
runtime.init_ray(settings)
runtime.start_serve(runtime.Runtime(settings))
url = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(120):
    try:
        httpx.get(url + "/api/health", timeout=2)
        break
    except httpx.HTTPError:
        time.sleep(0.5)
codes = [httpx.get(url + "/api/jobs", timeout=10, headers=h).status_code
         for h in ({}, {"Authorization": "Bearer " + "w" * 40})]
node = ray._private.worker.global_worker.node
print(json.dumps({"codes": codes, "logs": node.get_logs_dir_path()}), file=sys.__stdout__)
serve.shutdown()
ray.shutdown()
"""


def test_the_serve_app_writes_json_lines(tmp_path: Path) -> None:
    """The Serve app started as `tg up` starts it, TG_LOG_FORMAT=json: its replica's lines
    (a refused request is a WARNING naming the route and the client, never what was sent)
    and Serve's own log files are one JSON object per line."""
    args = [str(free_port()), str(tmp_path / "x.duckdb"), str(tmp_path / "configs")]
    done = run_json_logged(SERVE_SCRIPT, args, tmp_path)
    # the script's one line (Ray may print its own after it, at shutdown)
    found = json.loads(next(ln for ln in done.stdout.splitlines() if ln.startswith('{"codes"')))
    assert found["codes"] == [401, 401], found
    logs_dir = Path(found["logs"])
    replica = [
        line
        for f in logs_dir.glob("worker-*.err")
        if "SERVE_REPLICA::" in (text := f.read_text())
        for line in json_lines(text)
    ]
    refused = [r for r in replica if str(r.get("message", "")).startswith("refused ")]
    assert [r["message"] for r in refused] == [
        "refused GET /api/jobs from 127.0.0.1: no bearer token",
        "refused GET /api/jobs from 127.0.0.1: a wrong bearer token",
    ], refused
    assert all(r["levelname"] == "WARNING" for r in refused)
    assert all(str(r["actor_name"]).startswith("SERVE_REPLICA::") for r in refused)
    serve_lines = [
        line for f in (logs_dir / "serve").glob("*.log") for line in json_lines(f.read_text())
    ]
    assert serve_lines, "Serve wrote no line to its own log files"
    everything = "".join(f.read_text(errors="replace") for f in logs_dir.rglob("*") if f.is_file())
    assert "w" * 40 not in everything and "k" * 40 not in everything
