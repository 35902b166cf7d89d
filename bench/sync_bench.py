"""End-to-end sync throughput: demo source on 127.0.0.1 -> engine -> Database actor -> DuckDB.

    .venv/bin/python bench/sync_bench.py [--rows 10000] [--per-page 500] [--runs 3]

Prints, per run, rows/s over the run's started_at..finished_at (what tg.runs records), and
the wall time from trigger to `succeeded`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Mount  # noqa: E402

from serve.demo import build_demo_app  # noqa: E402
from tg_actors import runtime  # noqa: E402
from tg_actors.local_server import ThreadedServer  # noqa: E402
from tg_actors.settings import Settings  # noqa: E402

JOB = """name: bench
source:
  url: {url}/demo/orders
  params: {{per_page: {per_page}}}
  records: "$.data"
  paginate: {{type: page}}
destination: {{table: bench, write: {write}, primary_key: [id]}}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--per-page", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", default="merge", choices=["append", "replace", "merge"])
    args = parser.parse_args()
    server = ThreadedServer(Starlette(routes=[Mount("/demo", app=build_demo_app(args.rows))]))
    server.start()
    tmp = Path(tempfile.mkdtemp(prefix="tg_bench_"))
    jobs = tmp / "configs" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "bench.yaml").write_text(
        JOB.format(url=server.url, per_page=args.per_page, write=args.write)
    )
    settings = Settings(
        configs=tmp / "configs",
        db_path=tmp / "bench.duckdb",
        namespace=f"bench_{uuid.uuid4().hex[:6]}",
        engines=1,
        tick_seconds=0.05,
    )
    began = time.perf_counter()
    runtime.init_ray(settings)
    rt = runtime.start(settings, schedules=False, serve_app=False)
    print(f"start-up (ray.init + actors, no Serve): {time.perf_counter() - began:.1f}s")
    for i in range(1, args.runs + 1):
        t0 = time.perf_counter()
        run_id = ray.get(rt.scheduler.trigger.remote("bench"))
        while (run := ray.get(rt.db.get_run.remote(run_id)))["state"] not in (
            "succeeded",
            "failed",
        ):
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        seconds = (run["finished_at"] - run["started_at"]).total_seconds()
        print(
            f"run {i}: {run['state']} {run['rows_loaded']} rows, {run['pages']} pages, "
            f"{seconds:.2f}s -> {run['rows_loaded'] / seconds:,.0f} rows/s "
            f"(trigger to succeeded {wall:.2f}s)"
        )
    runtime.stop(rt)
    ray.shutdown()
    server.stop()


if __name__ == "__main__":
    main()
