"""Every job shipped in configs/jobs runs green through `tg up` against the offline demo source
(pointed at a free port instead of 8000), in name order (a for_each child after its parent),
and the incremental one reads less the second time."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kit.cli import UP_TIMEOUT, free_port, poll, started, tg, tg_env

pytestmark = [pytest.mark.slow]
SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "jobs"


def copy_jobs(port: int, target: Path) -> list[str]:
    jobs = target / "jobs"
    jobs.mkdir(parents=True)
    names = []
    for path in sorted(SHIPPED.glob("*.yaml")):
        text = path.read_text(encoding="utf-8").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        (jobs / path.name).write_text(text, encoding="utf-8")
        names.append(path.stem)
    return names


def test_every_shipped_job_runs_green(tmp_path: Path) -> None:
    port = free_port()
    names = copy_jobs(port, tmp_path / "configs")
    db = tmp_path / "data" / "turbo_giggle.duckdb"
    args = tg("up", "--configs", str(tmp_path / "configs"), "--db", str(db), "--port", str(port))
    with started(args, tg_env(port), tmp_path) as proc:
        proc.wait_for_line(r"is up in", UP_TIMEOUT)
        token = (tmp_path / "data" / "api_token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=30) as api:

            def finish(name: str) -> dict[str, Any]:
                run_id = api.post(f"/api/jobs/{name}/runs").json()["run_id"]

                def done() -> dict[str, Any] | None:
                    run = api.get(f"/api/runs/{run_id}").json()
                    return run if run["state"] in ("succeeded", "failed") else None

                return poll(f"run of {name}", done, timeout=120, every=0.3)  # type: ignore[no-any-return]

            results = {name: finish(name) for name in names}
            for name, run in results.items():
                assert run["state"] == "succeeded", (name, run["error"])
                assert run["rows_loaded"] > 0, name
            # incremental: a later run asks only from the stored cursor (minus lookback). The
            # job's first run, the full read, may be its own cron tick (*/2) when the test
            # spans an even minute, before the manual one above
            runs = api.get("/api/runs", params={"job": "demo_orders_incremental"}).json()
            full_read = max(int(r["rows_loaded"] or 0) for r in runs)
            assert full_read == 2500, runs
            again = finish("demo_orders_incremental")
            assert again["state"] == "succeeded"
            assert again["rows_loaded"] < full_read
            tables = {t["name"]: t["rows"] for t in api.get("/api/tables").json()}
            assert tables["demo_orders"] == 2500
            assert tables["demo_orders_by_country"] == 2500
            assert tables["demo_orders_links"] == 2500
            assert tables["demo_orders_incremental"] == 2500
            assert 0 < tables["demo_paid_orders"] < 2500
            # for_each: every order under its customer; window: every week up to now
            assert tables["demo_customers"] == 250
            assert tables["demo_customers_orders"] == 2500
            assert tables["demo_orders_weekly"] == 2500
        proc.popen.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
