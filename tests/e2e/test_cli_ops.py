"""`tg jobs`, `tg runs`, `tg logs`, `tg trigger`, `tg run` and `tg engines` against one real
`tg up` (subprocesses, its own local Ray; the token read from the `api_token` file beside
--db): their tables, their `--json` documents (each one JSON document on stdout), the
`progress` events of `/api/events?job=` during a run of many pages, `tg run` handing the run
to the system that holds the file, and exit codes 0, 1, 2 and 3 (unknown job or run; after
the stop, no system answering)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.kit.cli import EXIT_TIMEOUT, JOB, UP_TIMEOUT, free_port, orders_job, started, tg, tg_env
from tests.kit.jobs import write_job
from tg_actors.client import Client

pytestmark = [pytest.mark.slow]
PAGED = "e2e_paged"  # 2500 rows, 5 a page: a run long enough to report progress
MISSING = "e2e_missing"  # its source answers 404: the run fails


def test_operating_a_running_system(tmp_path: Path) -> None:
    port = free_port()
    configs = tmp_path / "configs"
    write_job(configs, JOB, orders_job(port, interval=False))
    paged = orders_job(port, name=PAGED, interval=False).replace("per_page: 500", "per_page: 5")
    write_job(configs, PAGED, paged)
    write_job(configs, MISSING, orders_job(port, name=MISSING, path="/demo/nope", interval=False))
    db = tmp_path / "data" / "turbo_giggle.duckdb"
    env = tg_env(port)  # no TG_API_TOKEN: the commands read data/api_token
    on = ["--db", str(db)]

    def tg_cli(*args: str, timeout: float = 120) -> tuple[int, str, str]:
        done = subprocess.run(
            tg(*args), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout
        )
        return done.returncode, done.stdout, done.stderr

    def tg_json(*args: str) -> Any:
        rc, out, err = tg_cli(*args, "--json")
        assert rc == 0, out + err
        return json.loads(out)  # the whole of stdout is one JSON document

    up = tg("up", "--configs", str(configs), "--db", str(db), "--port", str(port))
    with started(up, env, tmp_path) as proc:
        proc.wait_for_line(r"turbo-giggle is up in ([\d.]+)s", UP_TIMEOUT)

        jobs = tg_json("jobs", *on)
        assert sorted(j["name"] for j in jobs) == sorted([JOB, PAGED, MISSING])
        assert all(j["paused"] is False and j["last_run"] is None for j in jobs), jobs

        # the SSE progress events of a run of 500 pages, read beside `tg trigger --wait`
        token = (db.parent / "api_token").read_text(encoding="utf-8").strip()
        events: list[tuple[str, dict[str, Any]]] = []
        connected = threading.Event()
        reader = Client(f"http://127.0.0.1:{port}", token)

        def read() -> None:
            try:
                for event, data in reader.events(PAGED):
                    events.append((event, data))
                    connected.set()
            except Exception:
                connected.set()

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        assert connected.wait(30) and events[:1] == [("connected", {})], events
        rc, out, err = tg_cli("trigger", PAGED, "--wait", *on, timeout=300)
        reader.close()
        thread.join(timeout=10)
        assert rc == 0, out + err
        run_id = re.search(rf"^triggered run (\w+) of job {PAGED} on http", out, re.M)
        assert run_id, out
        assert re.search(rf"^{PAGED}: succeeded — 2500 rows, 501 pages, [\d.]+s \(run ", out, re.M)
        # stderr is no terminal: the progress line once, at the end, as a plain summary
        assert re.fullmatch(rf"{PAGED}: 2500 rows, 501 pages, \d+ rows/s, [\d.]+s elapsed\n", err)
        progress = [d for e, d in events if e == "progress"]
        assert progress, events
        assert all(d["run_id"] == run_id[1] and d["job"] == PAGED for d in progress), progress
        assert {"run_id", "job", "attempt", "rows", "pages", "ts"} == set(progress[0])
        assert all(0 < d["rows"] <= 2500 and d["pages"] > 0 for d in progress), progress

        # trigger without waiting, then follow its logs to the end
        queued = tg_json("trigger", JOB, *on)
        assert queued["job"] == JOB and queued["run_id"], queued
        rc, out, err = tg_cli("logs", queued["run_id"], "-f", *on, timeout=300)
        assert rc == 0, out + err
        assert err.strip().endswith(f"run {queued['run_id']} succeeded"), err
        logs = tg_json("logs", queued["run_id"], *on)
        assert isinstance(logs, list), logs
        assert all(entry["message"].splitlines()[0] in out for entry in logs), (out, logs)

        # `tg run` while `tg up` holds the file: the run goes to it, and is followed
        rc, out, err = tg_cli("run", MISSING, "--configs", str(configs), *on, timeout=300)
        assert rc == 1, out + err  # the run failed
        assert re.search(rf"^started run \w+ of job {MISSING} on http", out, re.M), out
        assert re.search(rf"^{MISSING}: failed — 0 rows", out, re.M), out
        assert re.search(r"^error: .*404", out, re.M), out
        ran = tg_json("run", JOB, "--configs", str(configs), *on)
        assert ran["state"] == "succeeded" and ran["job"] == JOB, ran

        runs = tg_json("runs", *on)
        assert [r["job"] for r in runs] == [JOB, MISSING, JOB, PAGED]  # newest first
        assert [r["run_id"] for r in tg_json("runs", "--job", JOB, "--limit", "1", *on)] == [
            ran["run_id"]
        ]
        failed = tg_json("runs", "--state", "failed", *on)
        assert [r["job"] for r in failed] == [MISSING], failed
        rc, out, err = tg_cli("runs", "--job", PAGED, *on)
        assert rc == 0 and run_id[1] in out and "succeeded" in out, out + err
        rc, out, err = tg_cli("jobs", *on)
        assert rc == 0, out + err
        assert re.search(rf"{MISSING}\b.*\bno\b.*\bfailed\b", out), out
        assert "3 job(s)" in out, out

        engines = tg_json("engines", *on)
        assert engines["count"] >= 1 and len(engines["engines"]) == engines["count"], engines

        # not found: exit 3, with the message
        rc, out, err = tg_cli("trigger", "nope", *on)
        assert rc == 3 and "No job named 'nope'" in err, out + err
        rc, out, err = tg_cli("run", "nope", "--configs", str(configs), *on)
        assert rc == 3 and "No job named 'nope'" in out + err, out + err
        rc, out, err = tg_cli("logs", "no-such-run", *on)
        assert rc == 3 and "no run 'no-such-run'" in err, out + err
        rc, out, err = tg_cli("runs", "--bogus", *on)
        assert rc == 2 and "No such option" in err, out + err

        proc.popen.send_signal(signal.SIGINT)
        assert proc.wait(EXIT_TIMEOUT) == 0, proc.output

    rc, out, err = tg_cli("jobs", *on)  # the token file is there; nothing answers now
    assert rc == 3 and "no turbo-giggle API at" in err, out + err
