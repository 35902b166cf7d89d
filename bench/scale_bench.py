"""Scale-out: rows/s of one latency-bound source synced by 1, 2, 4 engines on simulated nodes.

    .venv/bin/python bench/scale_bench.py [--rows 1000000] [--page-size 1000] [--latency-ms 20]
        [--shards 8] [--engines 1,2,4] [--timeout 1800] [--keep] [--quick]

Run by hand, never by the tests. A uvicorn process on 127.0.0.1 serves `--rows` records
(id, name, value, ts; ids 1..rows) split into `--shards` shards, `--page-size` a page, each
request held `--latency-ms` like a real API (`/items?shard=K&page=N` -> `{"items", "next"}`).
One job per shard follows the `next` links, so a shard's pages come one after another. Ray runs
as a local multi-node cluster (`ray.cluster_utils.Cluster`): a head with no CPU that holds the
DuckDB file (resource `db`) and one 1-CPU worker node per engine. For each engine count k a
fresh runtime (k engines, one run at a time each, one CPU each: one engine a node) and a fresh
DuckDB file; every shard job is triggered at once; wall = first trigger to last run finished.

Reading it: rows/s = rows / wall; speed-up = rows/s over that of 1 engine; efficiency =
speed-up / k. "latency bound" is pages x latency / min(k, shards): the wall if the engines
spent no time but waiting on the source. Each run is checked afterwards (count(*) and
count(DISTINCT id) equal --rows, ids 1..rows); a mismatch stops the bench. The simulated nodes
share this machine's cores: CPU-bound work cannot scale past the core count, latency-bound can.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from benchkit import (  # first: it keeps the local Ray on 127.0.0.1
    ServerProcess,
    listen,
    parse_args,
    query_of,
    run_asgi,
    send_body,
    start_runtime,
    stop_runtime,
)

from tg_actors.runstate import TERMINAL

HERE = Path(__file__).resolve()
JOB = """name: scale_s{shard}
source:
  url: {url}/items
  params: {{shard: "{shard}"}}
  records: "$.items"
  paginate: {{type: next_url, path: "$.next"}}
  timeout: 120s
destination: {{table: scale_s{shard}, write: append}}
timeout: 60m
"""


def shard_bounds(rows: int, shards: int) -> list[tuple[int, int]]:
    """(first id, row count) of each shard: ids 1..rows, the remainder spread over the first."""
    base, extra = divmod(rows, shards)
    bounds, first = [], 1
    for k in range(shards):
        count = base + (k < extra)
        bounds.append((first, count))
        first += count
    return bounds


def pages_of(rows: int, shards: int, size: int) -> int:
    return sum(max(1, -(-count // size)) for _, count in shard_bounds(rows, shards))


# --- the source: its own process ------------------------------------------------------------


def serve(rows: int, shards: int, size: int, latency: float) -> None:
    """Bind, print the port, build every page once, serve (each answer `latency` s late)."""
    import asyncio

    sock, base = listen()
    pages: list[list[bytes]] = []
    for shard, (first, count) in enumerate(shard_bounds(rows, shards)):
        ids = range(first, first + count)
        chunks = [ids[i : i + size] for i in range(0, max(count, 1), size)]
        pages.append([])
        for n, chunk in enumerate(chunks, start=1):
            items = [
                {"id": i, "name": f"item {i}", "value": i * 0.5, "ts": 1_704_067_200 + i}
                for i in chunk
            ]
            nxt = f"{base}/items?shard={shard}&page={n + 1}" if n < len(chunks) else None
            pages[-1].append(orjson.dumps({"items": items, "next": nxt}))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body, status = b'{"status":"ok"}', 200
        if scope["path"] == "/items":
            await asyncio.sleep(latency)
            query = query_of(scope)
            shard, n = int(query.get(b"shard", b"0")), int(query.get(b"page", b"1"))
            ok = 0 <= shard < len(pages) and 1 <= n <= len(pages[shard])
            body, status = (pages[shard][n - 1], 200) if ok else (b'{"detail":"none"}', 404)
        await send_body(send, body, status)

    run_asgi(app, sock, loop="uvloop", http="httptools")


def start_source(args: argparse.Namespace) -> ServerProcess:
    command = [sys.executable, str(HERE), "--serve", "--rows", str(args.rows)]
    command += ["--shards", str(args.shards), "--page-size", str(args.page_size)]
    command += ["--latency-ms", str(args.latency_ms)]
    return ServerProcess(command, ready_s=300)  # it builds every page before it answers


# --- one engine count -----------------------------------------------------------------------


@dataclass
class Result:
    engines: int
    nodes: list[str]
    wall: float
    rows: int

    @property
    def rate(self) -> float:
        return self.rows / self.wall


def engine_nodes(engines: list[Any], labels: dict[str, str]) -> list[str]:
    """Where each engine runs (the node its `stats()` reports), as head / w1..wN."""
    import ray

    stats = ray.get([engine.stats.remote() for engine in engines], timeout=30)
    return [labels.get(s["node_id"], s["node_id"]) for s in stats]


def wait_runs(rt: Any, run_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    import ray

    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    while len(done) < len(run_ids):
        pending = [r for r in run_ids if r not in done]
        got = ray.get([rt.db.get_run.remote(r) for r in pending])
        done |= {
            r: run for r, run in zip(pending, got, strict=True) if run and run["state"] in TERMINAL
        }
        if time.monotonic() > deadline:
            states = {r: (done.get(r) or {}).get("state", "not ended") for r in run_ids}
            raise TimeoutError(f"runs not ended within {timeout:.0f}s: {states}")
        time.sleep(0.05)
    failed = [f"{r['job']}: {r['state']}: {r.get('error')}" for r in done.values()]
    failed = [f for f in failed if ": succeeded: " not in f]
    if failed:
        raise RuntimeError("runs did not succeed:\n  " + "\n  ".join(failed))
    return [done[r] for r in run_ids]


def verify(db_path: Path, rows: int, shards: int) -> None:
    """Exactly ids 1..rows landed, each once (read after the runtime closed the file)."""
    import duckdb

    union = " UNION ALL ".join(f"SELECT id FROM main.scale_s{k}" for k in range(shards))
    sql = f"SELECT count(*), count(DISTINCT id), min(id), max(id) FROM ({union})"
    for attempt in range(50):  # the killed Database process may still hold the file lock
        try:
            with duckdb.connect(str(db_path), read_only=True) as con:
                got = con.execute(sql).fetchone()
            break
        except duckdb.IOException:
            if attempt == 49:
                raise
            time.sleep(0.2)
    if got != (rows, rows, 1, rows):
        raise AssertionError(f"{db_path.name}: (count, distinct, min, max) = {got}, want {rows}")


def run_engines(
    k: int, url: str, tmp: Path, args: argparse.Namespace, labels: dict[str, str]
) -> Result:
    import ray

    from tg_actors.settings import Settings

    configs = tmp / f"configs_{k}"
    (configs / "jobs").mkdir(parents=True)
    for shard in range(args.shards):
        (configs / "jobs" / f"scale_s{shard}.yaml").write_text(JOB.format(shard=shard, url=url))
    settings = Settings(
        configs=configs,
        db_path=tmp / f"scale_{k}.duckdb",
        namespace=f"scale_{k}_{uuid.uuid4().hex[:6]}",
        engines=k,
        engine_num_cpus=1,
        engine_slots=1,
        tick_seconds=0.05,
    )
    rt = start_runtime(settings, init=False)  # on the cluster this process joined
    try:
        nodes = engine_nodes(rt.engines, labels)
        print(f"  {k} engine(s) on {nodes}", flush=True)
        t0 = time.perf_counter()
        jobs = [f"scale_s{shard}" for shard in range(args.shards)]
        run_ids = ray.get([rt.scheduler.trigger.remote(job) for job in jobs])
        runs = wait_runs(rt, run_ids, args.timeout)
        wall = time.perf_counter() - t0
    finally:
        stop_runtime(rt)
    loaded = sum(run["rows_loaded"] for run in runs)
    if loaded != args.rows:
        raise AssertionError(f"{k} engine(s): runs report {loaded} rows loaded, want {args.rows}")
    verify(settings.db_path, args.rows, args.shards)
    print(f"  {k} engine(s): {args.rows:,} rows in {wall:.1f}s, verified exact", flush=True)
    return Result(k, nodes, wall, args.rows)


# --- main -----------------------------------------------------------------------------------


def report(results: Sequence[Result], args: argparse.Namespace) -> None:
    pages = pages_of(args.rows, args.shards, args.page_size)
    base = next((r.rate for r in results if r.engines == 1), None)
    print(f"\n{args.rows:,} rows, {pages:,} pages in {args.shards} shards, {args.latency_ms:g} ms")
    head = f"{'engines':>7} {'nodes':>5} {'wall s':>7} {'rows/s':>10} {'speed-up':>8}"
    print(f"{head} {'efficiency':>10} {'latency bound s':>15}  engine nodes")
    for r in results:
        speed = r.rate / base if base else float("nan")
        bound = pages * args.latency_ms / 1000 / min(r.engines, args.shards)
        nodes = f"{len(set(r.nodes)):>5}" if r.nodes else f"{'?':>5}"
        print(
            f"{r.engines:>7} {nodes} {r.wall:7.1f} {r.rate:10,.0f} {speed:7.2f}x"
            f" {speed / r.engines:10.0%} {bound:15.1f}  {','.join(r.nodes)}"
        )
    print(
        f"\nos.cpu_count() = {os.cpu_count()}: the simulated nodes share these cores, so"
        " CPU-bound work (parsing, Arrow, DuckDB) cannot scale past ~that many x;"
        " latency-bound work (waiting on the source) can."
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--engines", default="1,2,4", help="comma-separated engine counts")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per engine count")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    quick = {"rows": 8000, "page_size": 500, "shards": 4, "engines": "1,2", "timeout": 120.0}
    args = parse_args(parser, argv, **quick)
    if args.serve:
        return serve(args.rows, args.shards, args.page_size, args.latency_ms / 1000)
    counts = [int(k) for k in args.engines.split(",")]
    if args.rows < args.shards or min(counts) < 1:
        parser.error("need --rows >= --shards and engine counts >= 1")

    import ray
    from ray.cluster_utils import Cluster

    tmp = Path(tempfile.mkdtemp(prefix="tg_scale_bench_"))
    t0 = time.perf_counter()
    source = start_source(args)
    print(f"source: {source.url}, up (pages built) in {time.perf_counter() - t0:.1f}s", flush=True)
    cluster = None
    try:
        t0 = time.perf_counter()
        head = {"num_cpus": 0, "resources": {"db": 1}, "include_dashboard": False}
        cluster = Cluster(initialize_head=True, head_node_args=head)
        for _ in range(max(counts)):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        assert cluster.head_node is not None
        labels = {cluster.head_node.node_id: "head"}
        labels |= {n.node_id: f"w{i}" for i, n in enumerate(cluster.worker_nodes, start=1)}
        ray.init(
            address=cluster.address,
            namespace="scale_bench",
            logging_level=logging.WARNING,
            runtime_env={"worker_process_setup_hook": "tg_actors.logs.setup"},
        )
        print(f"cluster: head + {max(counts)} worker nodes in {time.perf_counter() - t0:.1f}s")
        results = [run_engines(k, source.url, tmp, args, labels) for k in counts]
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()  # type: ignore[no-untyped-call]
        source.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report(results, args)


if __name__ == "__main__":
    main()
