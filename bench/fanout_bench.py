"""Dependent endpoints: `source.for_each` (one child request per parent row) against dlt.

    .venv/bin/python bench/fanout_bench.py [--parents 2000] [--children 10] [--latency-ms 20]
        [--concurrency 16] [--limited-parents 300] [--skip-dlt] [--quick]

Run by hand, never by the tests. Everything on 127.0.0.1, in one run:

1. a local API in its own process (uvicorn): `GET /parents?page=N` lists `--parents` parents
   `--parent-page-size` a page (`next` links in the body), `GET /parents/{id}/children` one
   page of `--children` child records; every answer waits `--latency-ms` (asyncio.sleep: the
   server is not CPU bound, the latency is what a fan-out has to hide);
2. turbo-giggle's actors (start_runtime, runs triggered through the Scheduler): the job
   `fanout_parents` writes table `parents`, then the child job `fanout_children` reads
   `parents/{parent_id}/children` for each row of `SELECT id AS parent_id FROM parents`
   (`for_each.concurrency` `--concurrency`, at most 64), first over `--parents`/4 parents
   (a warm-up, and memory at a quarter of the rows), then over all of them: child
   requests/s and rows/s from the run's started_at..finished_at (tg.runs); RSS of
   turbo-giggle's processes (Ray's and its workers') sampled every 0.1 s during each run;
3. the same child load under `rate_limit: {per_second: 50}` over `--limited-parents` parents:
   requests/s and the share of the budget used;
4. dlt's `rest_api` source the same way (`parents`, and `children` at
   `parents/{resources.parents.id}/children` with `"parallelized": True`, `EXTRACT__WORKERS`
   `--dlt-workers`, by default the same as --concurrency; dlt's own default is 5) into
   DuckDB in a subprocess (parquet load files); its requests/s over its whole pipeline
   (parents read + children + normalize + load) and over extract alone; `uv sync --group
   bench` installs dlt (`make test`'s `uv sync --frozen` removes it again); `--skip-dlt`.

The "limit" line: `--parents` requests x latency / concurrency, what a perfect client with
that many requests in flight would take.

Measured here (`.venv/bin/python bench/fanout_bench.py`, the defaults: 2,000 parents x 10
children, 20 ms a response, concurrency 16, dlt 1.31.0; a 2-core machine shared with other
work, so figures vary; whole benchmark 41 s):

    what                                            measured                              rate
    parents (next_url pages)                        2,000 rows in 0.54s                   3,685 rows/s
    children, 500 parents (for_each, 16 at once)    500 requests, 5,000 rows in 1.21s     412 req/s, 4,121 rows/s
    children, 2,000 parents (for_each, 16 at once)  2,000 requests, 20,000 rows in 5.51s  363 req/s, 3,630 rows/s
      limit: requests x latency / concurrency       2.50s                                 800 req/s (tg at 45% of it)
      tg peak RSS, 500 parents                      sum 2,412 MiB                         max proc 277 MiB (ray::Database)
      tg peak RSS, 2,000 parents                    sum 2,434 MiB                         max proc 290 MiB (ray::Database)
    children under rate_limit 50/s                  300 requests in 6.09s                 49.3 req/s = 99% of the budget
    dlt rest_api, parallelized, 16 workers          2,000 requests, 20,000 rows in 4.79s  417 req/s, 4,174 rows/s (extract 4.0s, normalize 0.6s, load 0.2s)
      dlt extract alone (parents + children)        4.01s                                 499 req/s
      turbo-giggle / dlt                            children run: 0.87x                   parents + children runs (6.05s) vs dlt's pipeline: 0.79x; vs dlt's extract: 0.66x

With `--concurrency 64` (and 64 dlt workers) both get slower, tg 292 req/s (9% of the 3,200
req/s limit), dlt 302 req/s over its pipeline: on 2 cores both are CPU bound, not latency
bound, well before 16 requests in flight. Memory is flat in the number of parents (2,434 vs
2,412 MiB summed over ~15 Ray processes, most of it Ray's own baseline). `--quick` (200
parents, 100 rate-limited, dlt if installed): 19 s, tg 398 req/s, limited 95% of the budget.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from benchkit import (  # first: it keeps the local Ray on 127.0.0.1
    MIB,
    MemorySampler,
    ServerProcess,
    listen,
    parse_args,
    psutil,
    query_of,
    run_asgi,
    send_body,
    start_runtime,
    tear_down,
    timer,
    write_jobs,
)
from dlt_rest import timed_run

HERE = Path(__file__).resolve()
ENDED = ("succeeded", "failed", "cancelled", "skipped")
BUDGET = 50  # requests/s of the rate-limited run
DLT_ENV = {"RUNTIME__DLTHUB_TELEMETRY": "false", "RUNTIME__LOG_LEVEL": "WARNING"}

# --- the API: parents and their children ----------------------------------------------------


def child(parent: int, k: int) -> dict[str, Any]:
    return {
        "id": parent * 1000 + k,
        "seq": k,
        "amount": round((parent * 37 + k * 11) % 10_000 / 100, 2),
        "status": ("open", "paid", "void")[(parent + k) % 3],
        "sku": f"SKU-{(parent * 7 + k) % 997:03d}",
    }


def serve(parents: int, children: int, page_size: int, latency: float) -> None:
    """The server process: parents pages and children pages, each after `latency` seconds."""
    sock, base = listen()
    pages = max(1, -(-parents // page_size))
    served = {"parents": 0, "children": 0}

    def parents_page(n: int) -> bytes:
        ids = range((n - 1) * page_size + 1, min(n * page_size, parents) + 1) if n >= 1 else []
        data = [{"id": i, "name": f"parent {i}"} for i in ids]
        nxt = f"{base}/parents?page={n + 1}" if 1 <= n < pages else None
        return orjson.dumps({"data": data, "page": n, "next": nxt})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        if path == "/health":
            return await send_body(send, b'{"status":"ok"}')
        if path == "/stats":
            return await send_body(send, orjson.dumps(served))
        await asyncio.sleep(latency)
        parts = path.strip("/").split("/")
        if parts == ["parents"]:
            served["parents"] += 1
            await send_body(send, parents_page(int(query_of(scope).get(b"page", b"1"))))
        elif len(parts) == 3 and parts[0] == "parents" and parts[2] == "children":
            served["children"] += 1
            parent = int(parts[1])
            if not 1 <= parent <= parents:
                return await send_body(send, b'{"detail":"no such parent"}', 404)
            data = [child(parent, k) for k in range(1, children + 1)]
            await send_body(send, orjson.dumps({"data": data}))
        else:
            await send_body(send, b'{"detail":"not found"}', 404)

    run_asgi(app, sock, loop="uvloop", http="httptools", backlog=4096)


def start_source(args: argparse.Namespace) -> ServerProcess:
    command = [sys.executable, str(HERE), "--role", "server", "--parents", str(args.parents)]
    command += ["--children", str(args.children), "--latency-ms", str(args.latency_ms)]
    command += ["--parent-page-size", str(args.parent_page_size)]
    return ServerProcess(command)


# --- turbo-giggle: the jobs, a run, memory ---------------------------------------------------

PARENTS_JOB = """name: fanout_parents
source:
  url: {url}/parents
  records: "$.data"
  paginate: {{type: next_url, path: "$.next"}}
  timeout: 60s
destination: {{table: parents, write: replace}}
timeout: 30m
"""
CHILD_JOB = """name: {name}
source:
  url: "{url}/parents/{{parent_id}}/children"
  records: "$.data"
  for_each:
    sql: "SELECT id AS parent_id FROM parents WHERE id <= {upto}"
    include: [parent_id]
    concurrency: {concurrency}
{limit}  timeout: 60s
destination: {{table: {table}, write: append}}
timeout: 30m
"""


def jobs(url: str, args: argparse.Namespace) -> dict[str, str]:
    def child_job(name: str, upto: int, limit: str = "") -> str:
        return CHILD_JOB.format(
            name=name, url=url, upto=upto, concurrency=args.concurrency, limit=limit, table=name
        )

    return {
        "fanout_parents": PARENTS_JOB.format(url=url),
        "fanout_quarter": child_job("fanout_quarter", max(1, args.parents // 4)),
        "fanout_children": child_job("fanout_children", args.parents),
        "fanout_limited": child_job(
            "fanout_limited", args.limited_parents, f"  rate_limit: {{per_second: {BUDGET}}}\n"
        ),
    }


class RunFailed(RuntimeError):
    pass


def run_job(rt: Any, job: str, budget: float) -> dict[str, Any]:
    """Trigger `job`, wait for its run to end; the run dict (with its seconds). A run that
    does not succeed raises RunFailed with its error and its logs."""
    import ray

    run_id = ray.get(rt.scheduler.trigger.remote(job), timeout=60)
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        run = ray.get(rt.db.get_run.remote(run_id), timeout=30)
        if run is not None and run["state"] in ENDED:
            if run["state"] != "succeeded":
                logs = ray.get(rt.db.get_logs.remote(run_id), timeout=30)
                lines = "\n".join(f"    {log}" for log in logs)
                raise RunFailed(f"{job} run {run_id} {run['state']}: {run.get('error')}\n{lines}")
            run = dict(run)
            run["seconds"] = (_at(run["finished_at"]) - _at(run["started_at"])).total_seconds()
            return run
        time.sleep(0.05)
    raise TimeoutError(f"{job} run {run_id} still running after {budget:.0f}s")


def _at(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


# --- dlt ----------------------------------------------------------------------------------


def dlt_child(url: str, db: str, workdir: str) -> None:
    """In the dlt subprocess: parents and their children into DuckDB; prints a JSON line."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {"base_url": f"{url}/"},
            "resources": [
                {
                    "name": "parents",
                    "endpoint": {
                        "path": "parents",
                        "params": {"page": 1},
                        "data_selector": "data",
                        "paginator": {"type": "json_link", "next_url_path": "next"},
                    },
                },
                {
                    "name": "children",
                    "endpoint": {
                        "path": "parents/{resources.parents.id}/children",
                        "data_selector": "data",
                        "paginator": "single_page",
                    },
                    "include_from_parent": ["id"],
                    "parallelized": True,
                },
            ],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="tg_fanout_bench",
        destination=dlt.destinations.duckdb(db),
        dataset_name="bench",
        pipelines_dir=workdir,
    )
    timed_run(pipeline, source, "children", "parquet")


def run_dlt(url: str, tmp: Path, workers: int) -> dict[str, Any]:
    work = tmp / "dlt"
    work.mkdir(exist_ok=True)
    command = [sys.executable, str(HERE), "--role", "dlt", "--url", url]
    command += ["--db", str(tmp / "dlt.duckdb"), "--workdir", str(work)]
    env = {**os.environ, **DLT_ENV, "DLT_DATA_DIR": str(work / "data")}
    env["EXTRACT__WORKERS"] = str(workers)
    proc = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"dlt failed ({proc.returncode}):\n{proc.stdout}{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def have_dlt() -> bool:
    return importlib.util.find_spec("dlt") is not None


# --- the benchmark ------------------------------------------------------------------------


def child_run(
    rt: Any, job: str, server_pid: int, budget: float
) -> tuple[dict[str, Any], MemorySampler]:
    """A run of `job` while the RSS of this process's descendants but the API server (Ray's
    processes and its workers') is sampled every 0.1 s."""
    me, server = os.getpid(), frozenset({server_pid})
    with MemorySampler(me, every=0.1, exclude=server, include_root=False) as rss:
        run = run_job(rt, job, budget)
    print(
        f"  {job}: {run['rows_loaded']:,} rows in {run['seconds']:.2f}s;"
        f" peak RSS (MiB): sum {rss.peak_sum / MIB:,.0f}; {rss.top(5)}",
        flush=True,
    )
    return run, rss


def report(lines: list[tuple[str, str, str]]) -> None:
    width = [max(len(row[i]) for row in lines) for i in range(2)]
    print(f"\n{'what':<{width[0]}}  {'measured':<{width[1]}}  rate")
    for what, measured, speed in lines:
        print(f"{what:<{width[0]}}  {measured:<{width[1]}}  {speed}")


def measure(args: argparse.Namespace, tmp: Path) -> None:
    from tg_actors.settings import Settings

    source = start_source(args)
    print(
        f"API at {source.url}: {args.parents:,} parents x {args.children} children,"
        f" {args.latency_ms:g} ms a response; concurrency {args.concurrency},"
        f" {psutil.cpu_count()} cores",
        flush=True,
    )
    write_jobs(tmp / "configs", jobs(source.url, args))
    settings = Settings(
        configs=tmp / "configs",
        db_path=tmp / "data" / "fanout_bench.duckdb",
        namespace=f"fanout_bench_{uuid.uuid4().hex[:6]}",
    )
    rt = None
    lines: list[tuple[str, str, str]] = []
    latency = args.latency_ms / 1000
    quarter = max(1, args.parents // 4)
    try:
        rt = start_runtime(settings)
        with timer("parents run"):
            parents = run_job(rt, "fanout_parents", args.budget)
        lines.append(
            (
                "parents (next_url pages)",
                f"{parents['rows_loaded']:,} rows in {parents['seconds']:.2f}s",
                f"{parents['rows_loaded'] / parents['seconds']:,.0f} rows/s",
            )
        )
        try:
            q_run, q_rss = child_run(rt, "fanout_quarter", source.proc.pid, args.budget)
            run, rss = child_run(rt, "fanout_children", source.proc.pid, args.budget)
            limited = run_job(rt, "fanout_limited", args.budget)
        except RunFailed as exc:
            print(f"\nFOR_EACH RUN FAILED: {exc}")
            raise
        ideal = args.parents * latency / args.concurrency
        for label, r, count in (
            (f"children, {quarter:,} parents", q_run, quarter),
            (f"children, {args.parents:,} parents", run, args.parents),
        ):
            lines.append(
                (
                    f"{label} (for_each, {args.concurrency} at once)",
                    f"{count:,} requests, {r['rows_loaded']:,} rows in {r['seconds']:.2f}s",
                    f"{count / r['seconds']:,.0f} req/s, {r['rows_loaded'] / r['seconds']:,.0f}"
                    " rows/s",
                )
            )
        lines.append(
            (
                "  limit: requests x latency / concurrency",
                f"{ideal:.2f}s",
                f"{args.concurrency / latency:,.0f} req/s (tg at"
                f" {100 * ideal / run['seconds']:.0f}% of it)",
            )
        )
        lines.append(
            (
                f"  tg peak RSS, {quarter:,} parents",
                f"sum {q_rss.peak_sum / MIB:,.0f} MiB",
                f"max proc {q_rss.biggest()[0] / MIB:,.0f} MiB ({q_rss.biggest()[1]})",
            )
        )
        lines.append(
            (
                f"  tg peak RSS, {args.parents:,} parents",
                f"sum {rss.peak_sum / MIB:,.0f} MiB",
                f"max proc {rss.biggest()[0] / MIB:,.0f} MiB ({rss.biggest()[1]})",
            )
        )
        req_s = args.limited_parents / limited["seconds"]
        lines.append(
            (
                f"children under rate_limit {BUDGET}/s",
                f"{args.limited_parents:,} requests in {limited['seconds']:.2f}s",
                f"{req_s:,.1f} req/s = {100 * req_s / BUDGET:.0f}% of the budget",
            )
        )
    finally:
        tear_down(rt, source, tmp / "unused")  # tmp itself holds dlt's work: removed in main
    if args.skip_dlt:
        report(lines)
        return
    if not have_dlt():
        lines.append(("dlt", "skipped: not installed (uv sync --group bench)", ""))
        report(lines)
        return
    source = start_source(args)  # a fresh server: nothing left over from tg's runs
    try:
        with timer(f"dlt (EXTRACT__WORKERS={args.dlt_workers})"):
            got = run_dlt(source.url, tmp, args.dlt_workers)
    finally:
        source.stop()
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in got["steps"].items())
    dlt_rate = args.parents / got["seconds"]
    extract_rate = args.parents / got["steps"]["extract"]
    tg_rate = args.parents / run["seconds"]
    both = parents["seconds"] + run["seconds"]
    lines.append(
        (
            f"dlt rest_api, parallelized, {args.dlt_workers} workers",
            f"{args.parents:,} requests, {got['rows']:,} rows in {got['seconds']:.2f}s",
            f"{dlt_rate:,.0f} req/s, {got['rows'] / got['seconds']:,.0f} rows/s ({steps})",
        )
    )
    lines.append(
        (
            "  dlt extract alone (parents + children)",
            f"{got['steps']['extract']:.2f}s",
            f"{extract_rate:,.0f} req/s",
        )
    )
    lines.append(
        (
            "  turbo-giggle / dlt",
            f"children run: {tg_rate / dlt_rate:.2f}x",
            f"parents + children runs ({both:.2f}s) vs dlt's pipeline: "
            f"{got['seconds'] / both:.2f}x; vs dlt's extract: {got['steps']['extract'] / both:.2f}x",
        )
    )
    report(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parents", type=int, default=2000)
    parser.add_argument("--children", type=int, default=10, help="child records a parent")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="every response's delay")
    parser.add_argument("--concurrency", type=int, default=16, help="for_each.concurrency (<=64)")
    parser.add_argument("--limited-parents", type=int, default=300, help=f"at {BUDGET} req/s")
    parser.add_argument("--parent-page-size", type=int, default=100)
    parser.add_argument("--dlt-workers", type=int, help="EXTRACT__WORKERS (--concurrency)")
    parser.add_argument("--skip-dlt", action="store_true")
    parser.add_argument("--budget", type=float, default=1200.0, help="per run (s)")
    parser.add_argument("--role", default="bench", help=argparse.SUPPRESS)
    for hidden in ("--url", "--db", "--workdir"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parse_args(parser, argv, parents=200, limited_parents=100, budget=120.0)
    if args.role == "server":
        return serve(args.parents, args.children, args.parent_page_size, args.latency_ms / 1000)
    if args.role == "dlt":
        return dlt_child(args.url, args.db, args.workdir)
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency: for_each.concurrency allows 1..64")
    if args.dlt_workers is None:
        args.dlt_workers = args.concurrency

    import shutil

    tmp = Path(tempfile.mkdtemp(prefix="tg_fanout_bench_"))
    began = time.perf_counter()
    try:
        measure(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nwhole benchmark: {time.perf_counter() - began:.0f}s")


if __name__ == "__main__":
    main()
