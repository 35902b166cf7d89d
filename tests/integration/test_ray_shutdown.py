"""runtime.shutdown_ray: the local Ray that init_ray started goes, every process of it (the
autoscaler's monitor, which it kills first, included), and no idle worker was prestarted.
`tg run`'s local Ray (init_ray(one_off=True)) starts no monitor nor dashboard API server,
and its actors work.
Its own process: the test session's Ray cannot be stopped here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import glob, json, os, sys
import ray
from tg_actors.runtime import init_ray, shutdown_ray
from tg_actors.settings import Settings
init_ray(Settings(namespace="tg_shutdown_test"), one_off=ONE_OFF)
node = ray._private.worker._global_node
@ray.remote(num_cpus=0)
class Echo:
    def echo(self, value):
        return value
answer = ray.get(Echo.remote().echo.remote("up"), timeout=120)
started = {kind: [i.process.pid for i in infos] for kind, infos in node.all_processes.items()}
def children(pid):
    found = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:  # a thread may end between the listing and the read
            listed = open(path).read().split()
        except OSError:
            continue
        for child in listed:
            found += [int(child), *children(int(child))]
    return found
def name(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""
ours = children(os.getpid())
idle = [pid for pid in ours if "IDLE" in name(pid)]
shutdown_ray()
seen = {"started": started, "children": ours, "idle": idle, "answer": answer}
print(json.dumps(seen), file=sys.__stdout__)
"""


@pytest.mark.parametrize("one_off", [False, True], ids=["tg-up", "tg-run"])
def test_shutdown_ray_leaves_no_process_of_the_local_ray(one_off: bool) -> None:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    script = f"ONE_OFF = {one_off}\n{SCRIPT}"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert ("monitor" in seen["started"]) is not one_off and "raylet" in seen["started"]
    assert ("dashboard" in seen["started"]) is not one_off
    assert seen["answer"] == "up"
    assert seen["idle"] == []  # no task worker prestarted for a driver that runs none
    deadline = time.monotonic() + 10  # reaped children of killed parents may linger briefly
    alive = list(seen["children"])
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if _running(pid)]
        time.sleep(0.2)
    assert alive == []


def _running(pid: int) -> bool:
    """Alive and not a zombie (/proc/PID/stat's state field)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
