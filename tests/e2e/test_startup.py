"""`tg up` while it is still starting (issue 12, defect 22).

A signal at any moment of start-up stops cleanly: what was started is stopped, the process
exits 0 with a short "stopped" line and no traceback, and no Ray process is left behind.
`GET /api/health` answers 503 `"starting"` until every actor has booted, then 200 `"ok"`.

Frugal: each `tg up` costs 25-50 s on a 2-core box. The moments are picked by what the
process tree and the API show (Ray's processes exist; an actor's process exists; health
says "starting"), never by sleeping.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from tests.kit.cli import (
    EXIT_TIMEOUT,
    JOB,
    UP_TIMEOUT,
    Proc,
    alive,
    describe,
    free_port,
    orders_job,
    poll,
    started,
    tg_env,
)
from tests.kit.harness import up_command
from tests.kit.jobs import write_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def commands(proc: Proc) -> list[str]:
    proc.record_descendants()
    return [describe(p) for p in proc.descendants.values() if alive(p)]


def health(base: str) -> tuple[int, dict[str, Any]] | None:
    """(status code, body) of GET /api/health, None while nothing answers."""
    try:
        response = httpx.get(f"{base}/api/health", timeout=10)
        return response.status_code, response.json()
    except (httpx.HTTPError, ValueError):
        return None


def assert_stopped_cleanly(proc: Proc, db: Path) -> None:
    rc = proc.wait(EXIT_TIMEOUT)
    assert rc == 0, f"exit code {rc}:\n{proc.output}"
    assert "Traceback" not in proc.output, proc.output
    assert any(line.startswith("stopped") for line in proc.lines), proc.output
    with suppress(AssertionError):
        poll(
            "Ray processes gone",
            lambda: not any(alive(p) for p in proc.descendants.values()),
            15,
            every=0.25,
        )
    left = {pid: describe(p) for pid, p in proc.descendants.items() if alive(p)}
    assert not left, f"processes left behind: {left}"
    if db.exists():  # closed cleanly: it opens, and what was stored is there
        con = duckdb.connect(str(db), read_only=True)
        con.close()


def interrupt_at(
    tmp_path: Path, name: str, signum: signal.Signals, moment: Callable[[Proc, str], bool]
) -> Proc:
    """`tg up`; `signum` once `moment(proc, base_url)` holds; it must stop cleanly."""
    port = free_port()
    configs, db = tmp_path / name / "configs", tmp_path / name / "data" / "turbo_giggle.duckdb"
    write_job(configs, JOB, orders_job(port, interval=True))
    base = f"http://127.0.0.1:{port}"
    with started(up_command(configs, db, port), tg_env(port), tmp_path) as proc:
        poll(f"{name}: the moment", lambda: moment(proc, base), UP_TIMEOUT, every=0.05)
        proc.record_descendants()
        proc.popen.send_signal(signum)
        assert_stopped_cleanly(proc, db)
        print(f"{name}: {signum.name} -> {proc.lines[-2:]}")
        return proc


def test_a_signal_at_any_moment_of_start_up_stops_cleanly(tmp_path: Path) -> None:
    # 1. inside ray.init: Ray's own processes are being started (Ray installs SIGTERM
    #    handlers of its own there)
    def ray_starting(proc: Proc, _base: str) -> bool:
        return any("gcs_server" in c or "raylet" in c for c in commands(proc))

    interrupt_at(tmp_path, "in_ray_init", signal.SIGTERM, ray_starting)

    # 2. Ray is up, the actors are being created and booted (Ctrl-C: SIGINT)
    def actors_starting(proc: Proc, _base: str) -> bool:
        return any(c.startswith(("ray::Database", "ray::ConfigManager")) for c in commands(proc))

    interrupt_at(tmp_path, "actors", signal.SIGINT, actors_starting)

    # 3. the API answers, health still says "starting" (the Scheduler has not booted)
    seen: list[tuple[int, dict[str, Any]]] = []

    def api_starting(_proc: Proc, base: str) -> bool:
        answer = health(base)
        if answer is not None:
            seen.append(answer)
        return answer is not None and answer[1].get("status") == "starting"

    proc = interrupt_at(tmp_path, "serving", signal.SIGTERM, api_starting)
    code, body = seen[-1]
    assert code == 503 and body["status"] == "starting", seen
    assert "starting" in body["components"].values(), body
    assert proc.lines  # (it may have come up meanwhile: then it stopped as usual)


def test_health_is_starting_503_until_every_actor_booted_then_ok(tmp_path: Path) -> None:
    port = free_port()
    configs, db = tmp_path / "configs", tmp_path / "data" / "turbo_giggle.duckdb"
    write_job(configs, JOB, orders_job(port, interval=False))
    base = f"http://127.0.0.1:{port}"
    seen: list[tuple[int, str]] = []
    with started(up_command(configs, db, port), tg_env(port), tmp_path) as proc:

        def up() -> bool:
            answer = health(base)
            if answer is not None:
                seen.append((answer[0], answer[1]["status"]))
            return any(line.startswith("turbo-giggle is up") for line in proc.lines)

        poll("tg up is up", up, UP_TIMEOUT, every=0.1)
        # once it says it is up, a triggered run is taken: health is ok at once
        answer = health(base)
        assert answer is not None
        code, body = answer
        assert (code, body["status"]) == (200, "ok"), body
        assert set(body["components"].values()) == {"alive"}, body
        assert {"database", "scheduler", "config_manager", "engines"} <= set(body["components"])
        # before: 503 "starting" (never "ok" early, never "degraded"), then only "ok"
        assert seen and seen[0] == (503, "starting"), seen
        first_ok = seen.index((200, "ok")) if (200, "ok") in seen else len(seen)
        assert set(seen[:first_ok]) == {(503, "starting")}, seen
        assert set(seen[first_ok:]) <= {(200, "ok")}, seen
        token = (db.parent / "api_token").read_text(encoding="utf-8").strip()
        run = httpx.post(
            f"{base}/api/jobs/{JOB}/runs", headers={"Authorization": f"Bearer {token}"}
        )
        assert run.status_code == 202, run.text
        run_id = run.json()["run_id"]

        def taken() -> bool:
            got = httpx.get(
                f"{base}/api/runs/{run_id}", headers={"Authorization": f"Bearer {token}"}
            ).json()
            return bool(got["state"] in ("running", "succeeded"))

        poll("the triggered run taken", taken, 60, every=0.2)
        proc.record_descendants()
        proc.popen.send_signal(signal.SIGINT)
        assert_stopped_cleanly(proc, db)
    assert "stopped; DuckDB closed cleanly." in proc.lines
