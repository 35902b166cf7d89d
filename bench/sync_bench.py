"""Sync throughput on a local paginated JSON API: the fetch+parse limit, turbo-giggle, dlt.

    .venv/bin/python bench/sync_bench.py [--rows 1000000] [--page-size 1000] [--skip-dlt] [--quick]
    .venv/bin/python bench/sync_bench.py --in-process --rows 100000   # Ray in this process

Run by hand, never by the tests. One run:

1. serves `--rows` records of 12 fields (a nested object, a list) `--page-size` a page from
   pre-serialised bytes, by uvicorn in a separate process on 127.0.0.1 (`/items?page=N`,
   `next` links in the body), and checks it serves well above the client's rate;
2. (a) the limit: fetch + orjson only (httpx, sequential and 4 requests at once), and fetch +
   parse + `records_to_arrow` (the engine's own CPU per page, no Ray, no DuckDB);
3. (b) `tg run` as a subprocess (its own local Ray), an append run into a fresh table, then a
   merge run of the same rows into it (every key matched: 1M updates);
4. (c) dlt's `rest_api` source into DuckDB the same two ways, in a subprocess, writing
   parquet load files (`--dlt-format default` for dlt's own default, insert_values; `uv sync
   --group bench` installs dlt; `make test`'s `uv sync --frozen` removes it again).

Peak memory: RSS of the measured process and all its descendants (Ray's GCS, raylet, workers),
sampled every 0.2 s; "sum" counts pages shared between processes (Ray's object store, shared
libraries) once per process, so it overstates the total. `--profile DIR` records py-spy
profiles (collapsed stacks) of the SyncEngine and Database worker processes during tg's runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from benchkit import (  # first: it keeps the local Ray (tg run's too) on 127.0.0.1
    MIB,
    MemorySampler,
    Profiler,
    ServerProcess,
    listen,
    parse_args,
    psutil,
    query_of,
    run_asgi,
    send_body,
    start_runtime,
    stop_runtime,
)

HERE = Path(__file__).resolve()
DLT_REST = HERE.parent / "dlt_rest.py"  # dlt in a process of its own, with nothing of ours
DLT_ENV = {"RUNTIME__DLTHUB_TELEMETRY": "false", "RUNTIME__LOG_LEVEL": "WARNING"}

# --- the source: records, pages, the server process -------------------------------------

_STATUSES = ("paid", "pending", "refunded", "cancelled")
_PLACES = (("Berlin", "DE"), ("Paris", "FR"), ("Lisbon", "PT"), ("Osaka", "JP"), ("Lima", "PE"))
_TAGS = ("gift", "express", "bulk", "returning")
_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z


def record(i: int) -> dict[str, Any]:
    """Record i (1-based) of 12 fields: an object (`address`) and a list (`tags`) among them."""
    city, country = _PLACES[i % len(_PLACES)]
    created = _EPOCH + 61 * i
    return {
        "id": i,
        "name": f"Customer {i % 5000:04d}",
        "email": f"customer{i % 5000:04d}@example.com",
        "amount": round((i * 37 % 100_000) / 100, 2),
        "quantity": i % 17,
        "discount": (i % 9) / 10 if i % 4 == 0 else None,
        "status": _STATUSES[i % len(_STATUSES)],
        "active": i % 3 != 0,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created + 3600 * (i % 48))),
        "address": {"city": city, "country": country, "zip": f"{i % 100_000:05d}"},
        "tags": [tag for k, tag in enumerate(_TAGS) if i % (k + 2) == 0],
    }


def build_pages(rows: int, size: int, base_url: str) -> list[bytes]:
    """Every page's body, serialised once: `{"data", "page", "total", "total_pages", "next"}`."""
    count = max(1, -(-rows // size))
    pages = []
    for n in range(1, count + 1):
        data = [record(i) for i in range((n - 1) * size + 1, min(n * size, rows) + 1)]
        nxt = f"{base_url}/items?page={n + 1}" if n < count else None
        body = {"data": data, "page": n, "total": rows, "total_pages": count, "next": nxt}
        pages.append(orjson.dumps(body))
    return pages


def serve(rows: int, size: int) -> None:
    """The server process: bind, print the port, build the pages, serve until terminated."""
    sock, base = listen()
    pages = build_pages(rows, size, base)
    empty = orjson.dumps({"data": [], "page": None, "total": rows, "next": None})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/items":
            n = int(query_of(scope).get(b"page", b"1"))
            await send_body(send, pages[n - 1] if 1 <= n <= len(pages) else empty)
        elif scope["path"] == "/health":
            await send_body(send, b'{"status":"ok"}')
        else:
            await send_body(send, b'{"detail":"not found"}', 404)

    run_asgi(app, sock, loop="uvloop", http="httptools")


def start_source(rows: int, size: int) -> ServerProcess:
    command = [sys.executable, str(HERE), "--role", "server"]
    command += ["--rows", str(rows), "--page-size", str(size)]
    return ServerProcess(command, ready_s=300)  # it builds every page before it listens


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Result:
    what: str
    rows: int
    seconds: float  # the work itself
    wall: float | None = None  # whole process, start-up included
    peak_sum: float | None = None  # MiB
    peak_proc: float | None = None  # MiB
    peak_name: str = ""
    note: str = ""

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def wall_rate(self) -> float | None:
        return self.rows / self.wall if self.wall else None


def fill(result: Result, sampler: MemorySampler) -> Result:
    """The result with the sampler's peaks (MiB): the tree's sum, the biggest process."""
    result.peak_sum = sampler.peak_sum / MIB
    if sampler.peak:
        rss, result.peak_name = sampler.biggest()
        result.peak_proc = rss / MIB
    return result


# --- (a) the limit --------------------------------------------------------------------------


async def fetch_pages(
    url: str, pages: int, concurrency: int, handle: Callable[[bytes], int]
) -> tuple[int, float]:
    """GET every page with `concurrency` requests in flight; `handle(body)` returns its rows."""
    numbers = iter(range(1, pages + 1))
    rows = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal rows
        for n in numbers:
            response = await client.get(f"{url}/items", params={"page": n})
            response.raise_for_status()
            rows += handle(response.content)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return rows, time.perf_counter() - started


def measure_limit(url: str, rows: int, size: int) -> list[Result]:
    from tg_actors.sources.batches import records_to_arrow

    records_to_arrow([{"warm_up": 1}])
    pages = max(1, -(-rows // size))

    def parse(body: bytes) -> int:
        return len(orjson.loads(body)["data"])

    def to_arrow(body: bytes) -> int:
        return int(records_to_arrow(orjson.loads(body)["data"]).num_rows)

    runs = [
        ("server: fetch only, 4 at once", 4, lambda body: size),
        ("limit: fetch + orjson, sequential", 1, parse),
        ("limit: fetch + orjson, 4 at once", 4, parse),
        ("tg data path: + records_to_arrow, seq.", 1, to_arrow),
    ]
    results = []
    for what, concurrency, handle in runs:
        got, seconds = asyncio.run(fetch_pages(url, pages, concurrency, handle))
        note = "rows = pages x page size" if handle is runs[0][2] else ""
        results.append(Result(what, min(got, rows), seconds, note=note))
        print(f"  {what}: {results[-1].rate:,.0f} rows/s", flush=True)
    return results


# --- (b) turbo-giggle through its CLI --------------------------------------------------------

JOB = """name: {name}
source:
  url: {url}/items
  records: "$.data"
  paginate: {paginate}
  timeout: 120s
destination: {{table: items, write: {write}, primary_key: [id]}}
timeout: 60m
"""
PAGINATE = {
    "next_url": '{{type: next_url, path: "$.next"}}',
    "page": '{{type: page, size_param: per_page, size: {size}, total_path: "$.total"}}',
}
SUMMARY = re.compile(r"(\d+) rows, (\d+) pages, ([\d.]+)s")


def write_jobs(configs: Path, url: str, paginate: str, size: int) -> None:
    jobs = configs / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    for write in ("append", "merge"):
        text = JOB.format(
            name=f"bench_{write}",
            url=url,
            write=write,
            paginate=PAGINATE[paginate].format(size=size),
        )
        (jobs / f"bench_{write}.yaml").write_text(text)


class Attach:
    """py-spy on the SyncEngine and Database workers, attached as soon as they show up (a
    MemorySampler's on_sample), recording until they exit."""

    WANT = ("ray::SyncEngine", "ray::Database")

    def __init__(self, folder: Path | None, label: str) -> None:
        self.profiler, self.label = Profiler(folder, rate=200), label
        self.attached: set[str] = set()

    def __call__(self, procs: list[psutil.Process]) -> None:
        if not self.profiler.on or len(self.attached) == len(self.WANT):
            return
        for proc in procs:
            try:
                title = proc.cmdline()[0] if proc.cmdline() else ""
            except psutil.Error:
                continue
            want = next((w for w in self.WANT if title.startswith(w)), None)
            if want is None or want in self.attached:
                continue
            self.attached.add(want)
            name = want.removeprefix("ray::")
            self.profiler.record(name, proc.pid, None, f"{self.label}_{name}.txt")

    def stop(self) -> None:
        self.profiler.finish(wait=30)  # py-spy writes its file when the target exits


def run_tg(job: str, tmp: Path, rows: int, profile: Path | None) -> Result:
    command = [str(Path(sys.executable).parent / "tg"), "run", job]
    command += ["--configs", str(tmp / "configs"), "--db", str(tmp / "bench.duckdb"), "--no-demo"]
    env = dict(os.environ)
    profiler = Attach(profile, job)
    started = time.perf_counter()
    log = tmp / f"{job}.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            command, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        with MemorySampler(proc.pid, on_sample=profiler) as sampler:
            out, _ = proc.communicate()
    wall = time.perf_counter() - started
    profiler.stop()
    match = SUMMARY.search(out)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"tg run {job} failed ({proc.returncode}):\n{out}{log.read_text()}")
    loaded, _pages, seconds = int(match[1]), int(match[2]), float(match[3])
    if loaded != rows:
        print(f"  warning: {job} loaded {loaded} rows, expected {rows}")
    result = fill(Result(f"tg {job.removeprefix('bench_')} (tg run)", loaded, seconds), sampler)
    result.wall = wall
    print(f"  {out.strip()}\n  peak RSS by process (MiB): {sampler.top()}", flush=True)
    return result


# --- (c) dlt --------------------------------------------------------------------------------


def run_dlt(url: str, write: str, tmp: Path, paginate: str, file_format: str) -> Result:
    work = tmp / "dlt"
    work.mkdir(exist_ok=True)
    command = [sys.executable, str(DLT_REST), "--url", url, "--write", write]
    command += ["--db", str(tmp / "dlt.duckdb"), "--workdir", str(work), "--paginate", paginate]
    command += ["--dlt-format", file_format]
    env = {**os.environ, **DLT_ENV, "DLT_DATA_DIR": str(work / "data")}
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=work, stdout=subprocess.PIPE, text=True)
    with MemorySampler(proc.pid) as sampler:
        out, _ = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"dlt {write} failed ({proc.returncode}):\n{out}")
    report = json.loads(out.strip().splitlines()[-1])
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in report["steps"].items())
    label = f"dlt {write}" + ("" if file_format == "default" else f" ({file_format})")
    result = fill(Result(label, report["rows"], report["seconds"], wall), sampler)
    result.note = steps
    print(f"  {label}: {report['rows']} rows in {report['seconds']:.1f}s ({steps})", flush=True)
    return result


def have_dlt() -> bool:
    return importlib.util.find_spec("dlt") is not None


# --- the in-process mode (Ray in this process, no CLI) ---------------------------------------


def run_in_process(url: str, tmp: Path, rows: int) -> list[Result]:
    import uuid

    import ray

    from tg_actors.settings import Settings

    settings = Settings(
        configs=tmp / "configs",
        db_path=tmp / "bench.duckdb",
        namespace=f"bench_{uuid.uuid4().hex[:6]}",
        engines=1,
        tick_seconds=0.05,
    )
    rt = start_runtime(settings)
    results = []
    try:
        for job in ("bench_append", "bench_merge"):
            t0 = time.perf_counter()
            run_id = ray.get(rt.scheduler.trigger.remote(job))
            while (run := ray.get(rt.db.get_run.remote(run_id)))["state"] not in (
                "succeeded",
                "failed",
            ):
                time.sleep(0.02)
            wall = time.perf_counter() - t0
            if run["state"] != "succeeded":
                raise RuntimeError(f"{job}: {run['state']}: {run.get('error')}")
            seconds = (run["finished_at"] - run["started_at"]).total_seconds()
            what = f"tg {job.removeprefix('bench_')} (in-process)"
            results.append(Result(what, run["rows_loaded"], seconds, wall))
            print(f"  {what}: {run['rows_loaded']} rows, {seconds:.2f}s", flush=True)
    finally:
        stop_runtime(rt)
        ray.shutdown()
    return results


# --- report ---------------------------------------------------------------------------------


def report(results: Sequence[Result]) -> None:
    head = f"{'':40} {'rows':>9} {'s':>7} {'rows/s':>10} {'wall s':>7} {'rows/s':>9}"
    print(f"\n{head} {'peak MiB: sum':>14} {'max proc':>9}")
    for r in results:
        wall = f"{r.wall:7.1f} {r.wall_rate:9,.0f}" if r.wall and r.wall_rate else " " * 17
        mem = f"{r.peak_sum:14,.0f} {r.peak_proc:9,.0f}" if r.peak_sum else ""
        print(f"{r.what:40} {r.rows:9,} {r.seconds:7.2f} {r.rate:10,.0f} {wall} {mem}")
    by = {r.what: r for r in results}

    def ratio(a: str, b: str, walls: bool = False) -> None:
        if a in by and b in by:
            x, y = by[a], by[b]
            if walls and x.wall_rate and y.wall_rate:
                print(
                    f"  {a} / {b}: {x.rate / y.rate:.2f}x (wall: {x.wall_rate / y.wall_rate:.2f}x)"
                )
            else:
                print(f"  {a} / {b}: {x.rate / y.rate:.2f}x")

    server = by.get("server: fetch only, 4 at once")
    fastest = max((r.rate for r in results if r is not server), default=0.0)
    if server is not None and fastest:
        print(f"\nserver headroom: {server.rate / fastest:.1f}x the fastest client above")
    print("\nratios (rows/s over the run; wall includes process and Ray start-up):")
    for how in ("tg run", "in-process"):
        for write in ("append", "merge"):
            tg = f"tg {write} ({how})"
            for name in [n for n in by if n.startswith(f"dlt {write}")]:
                ratio(tg, name, walls=True)
            ratio(tg, "limit: fetch + orjson, sequential")
            ratio(tg, "limit: fetch + orjson, 4 at once")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--skip-dlt", action="store_true")
    parser.add_argument("--in-process", action="store_true", help="Ray in this process, no CLI")
    parser.add_argument("--skip-tg", action="store_true")
    parser.add_argument(
        "--dlt-format",
        choices=["default", "parquet", "jsonl"],
        default="parquet",
        help="dlt's loader file format: parquet (its fastest into duckdb, the default here) or"
        " default (dlt's own default for duckdb, insert_values: ~5x slower, 6 GiB at 1M rows)",
    )
    parser.add_argument("--paginate", choices=sorted(PAGINATE), default="next_url")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles of tg's runs here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--role", default="bench", help=argparse.SUPPRESS)
    args = parse_args(parser, argv, rows=20_000, in_process=True)  # one Ray start, not two
    if args.role == "server":
        return serve(args.rows, args.page_size)

    tmp = Path(tempfile.mkdtemp(prefix="tg_sync_bench_"))
    t0 = time.perf_counter()
    server = start_source(args.rows, args.page_size)
    results: list[Result] = []
    try:
        print(f"{args.rows:,} rows, {args.page_size} a page, served at {server.url}", flush=True)
        print(f"  pages built and served in {time.perf_counter() - t0:.1f}s", flush=True)
        write_jobs(tmp / "configs", server.url, args.paginate, args.page_size)
        print("(a) the limit", flush=True)
        results += measure_limit(server.url, args.rows, args.page_size)
        if args.skip_tg:
            pass
        elif args.in_process:
            print("(b) turbo-giggle, Ray in this process", flush=True)
            results += run_in_process(server.url, tmp, args.rows)
        else:
            print("(b) turbo-giggle: tg run", flush=True)
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
            for job in ("bench_append", "bench_merge"):
                results.append(run_tg(job, tmp, args.rows, args.profile))
        if not args.skip_dlt:
            if have_dlt():
                print("(c) dlt rest_api -> duckdb", flush=True)
                for write in ("append", "merge"):
                    results.append(run_dlt(server.url, write, tmp, args.paginate, args.dlt_format))
            else:
                print("(c) dlt skipped: not installed (uv sync --group bench)")
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report(results)


if __name__ == "__main__":
    main()
