"""Queries over the live database while a sync writes it: POST /api/sql under load.

    .venv/bin/python bench/sql_bench.py [--rows 1000000] [--page-size 1000] [--clients 8] [--quick]

Run by hand, never by the tests. Everything on 127.0.0.1, in one run:

1. the paginated source of bench/sync_bench.py (`--rows` records of 12 fields, `--page-size` a
   page, in its own process) and turbo-giggle's actors plus the Serve app (a free port, a fixed
   token) from one append job into the table `items`;
2. sync A: one run of the job alone (nothing queries): its rows/s;
3. sync B: the same run again (appending the same rows) while `--clients` threads each send
   `POST /api/sql` (JSON) in a closed loop: `SELECT count(*), sum(amount), max(id) FROM
   items` over the snapshot the Database actor reads; query p50/p99/max, queries/s, errors;
   a 429 (past TG_SQL_CONCURRENCY, `--sql-concurrency`, 4 by default) is counted as busy and
   sent again after 10 ms;
4. alone again, a full-table read streamed as Arrow (`Accept:
   application/vnd.apache.arrow.stream`) of everything synced (2 x --rows rows): rows/s and
   MiB/s as the client reads it.

Sync rows/s: the run's rows_loaded over its started_at..finished_at (from tg.runs).

Measured here (the default 1,000,000 rows, 8 clients, TG_SQL_CONCURRENCY 4; a 2-core machine
shared with other work, so figures vary about 2x):

    what                        measured                                     rate
    sync alone                  1,000,000 rows in 10.24s                     97,662 rows/s
    sync with 8 query clients   1,000,000 rows in 30.76s                     32,509 rows/s (+200% time)
    queries during sync B       1,638 ok (47.0/s), 852 busy (429), 0 errors  p50 123.8 ms  p99 227.3 ms  max 269.3 ms
    full read as Arrow (alone)  2,000,000 rows, 337.1 MiB in 2.81s           710,809 rows/s, 119.8 MiB/s

The queries share the 2 cores with the sync (engine, Database actor, Serve proxy and replica,
and the 8 client threads here): the sync takes 2.4-3x as long while they run.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
from benchkit import (  # first: it keeps the local Ray on 127.0.0.1
    free_port,
    ms,
    parse_args,
    pct,
    psutil,
    start_runtime,
    tear_down,
    timer,
    wait_http,
    write_jobs,
)
from sync_bench import start_source

TOKEN = f"bench-{uuid.uuid4().hex}"
ENDED = ("succeeded", "failed", "cancelled", "skipped")
JOB = """name: sql_bench
source:
  url: {url}/items
  records: "$.data"
  paginate: {{type: next_url, path: "$.next"}}
  timeout: 120s
destination: {{table: items, write: append}}
timeout: 60m
"""
QUERY = "SELECT count(*) AS n, sum(amount) AS total, max(id) AS last FROM items"
ARROW = "application/vnd.apache.arrow.stream"
BUSY_WAIT = 0.01  # seconds a client waits after a 429


def start_system(tmp: Path, source_url: str, port: int, concurrency: int) -> Any:
    from tg_actors import runtime
    from tg_actors.settings import Settings

    write_jobs(tmp / "configs", {"sql_bench": JOB.format(url=source_url)})
    settings = Settings(
        configs=tmp / "configs",
        db_path=tmp / "data" / "sql_bench.duckdb",
        namespace=f"sql_bench_{uuid.uuid4().hex[:6]}",
        port=port,
        api_token=TOKEN,
        sql_concurrency=concurrency,
    )
    rt = start_runtime(settings)
    with timer("Serve app up"):
        runtime.start_serve(rt)
        wait_http(f"http://127.0.0.1:{port}/api/health", 300, "the Serve app")
    return rt


def sync_once(rt: Any, budget: float) -> dict[str, Any]:
    """Trigger the job, wait for its run to end; the run dict."""
    import ray

    run_id = ray.get(rt.scheduler.trigger.remote("sql_bench"), timeout=60)
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        run = ray.get(rt.db.get_run.remote(run_id), timeout=30)
        if run is not None and run["state"] in ENDED:
            if run["state"] != "succeeded":
                raise RuntimeError(f"sync run {run_id} {run['state']}: {run.get('error')}")
            return dict(run)
        time.sleep(0.1)
    raise TimeoutError(f"sync run {run_id} still running after {budget:.0f}s")


def rate(run: dict[str, Any]) -> tuple[int, float]:
    """(rows, seconds) of a run, from its started_at..finished_at."""

    def at(value: Any) -> datetime:
        return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))

    seconds = (at(run["finished_at"]) - at(run["started_at"])).total_seconds()
    return int(run["rows_loaded"] or 0), seconds


class Clients:
    """`count` threads, each one connection, sending QUERY in a closed loop until stopped."""

    def __init__(self, base: str, count: int) -> None:
        self.base, self.count = base, count
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.busy = 0  # 429s: past TG_SQL_CONCURRENCY; the client waits BUSY_WAIT and retries
        self.seen_rows: list[int] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(count)]

    def _loop(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=60) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                try:
                    answer = client.post("/api/sql", json={"sql": QUERY})
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.errors.append(type(exc).__name__)
                    continue
                took = time.perf_counter() - began
                with self._lock:
                    if answer.status_code == 200:
                        self.latencies.append(took)
                        self.seen_rows.append(int(answer.json()["rows"][0][0]))
                    elif answer.status_code == 429:
                        self.busy += 1
                    else:
                        self.errors.append(f"{answer.status_code} {answer.text[:120]}")
                if answer.status_code == 429:
                    self._stop.wait(BUSY_WAIT)

    def __enter__(self) -> Clients:
        self.began = time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
        self.seconds = time.perf_counter() - self.began


def full_read(base: str) -> tuple[int, int, float]:
    """(rows, bytes, seconds) of `SELECT * FROM items` streamed as Arrow."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": ARROW}
    began = time.perf_counter()
    body = bytearray()
    with (
        httpx.Client(base_url=base, headers=headers, timeout=600) as client,
        client.stream("POST", "/api/sql", json={"sql": "SELECT * FROM items"}) as answer,
    ):
        if answer.status_code != 200:
            raise RuntimeError(f"full read: {answer.status_code} {answer.read()[:200]!r}")
        for chunk in answer.iter_bytes():
            body += chunk
    seconds = time.perf_counter() - began
    rows = pa.ipc.open_stream(pa.py_buffer(bytes(body))).read_all().num_rows
    return rows, len(body), seconds


def report(
    alone: tuple[int, float],
    loaded: tuple[int, float],
    clients: Clients,
    read: tuple[int, int, float],
) -> None:
    lat = clients.latencies
    done = len(lat)
    rows_a, secs_a = alone
    rows_b, secs_b = loaded
    rows_r, size_r, secs_r = read
    lines = [
        ("sync alone", f"{rows_a:,} rows in {secs_a:.2f}s", f"{rows_a / secs_a:,.0f} rows/s"),
        (
            f"sync with {clients.count} query clients",
            f"{rows_b:,} rows in {secs_b:.2f}s",
            f"{rows_b / secs_b:,.0f} rows/s ({100 * (secs_b / secs_a - 1):+.0f}% time)",
        ),
        (
            "queries during sync B",
            f"{done:,} ok ({done / clients.seconds:,.1f}/s), {clients.busy} busy (429), "
            f"{len(clients.errors)} errors",
            f"p50 {ms(pct(lat, 50))} ms  p99 {ms(pct(lat, 99))} ms  max {ms(max(lat))} ms"
            if lat
            else "-",
        ),
        (
            "full read as Arrow (alone)",
            f"{rows_r:,} rows, {size_r / 2**20:.1f} MiB in {secs_r:.2f}s",
            f"{rows_r / secs_r:,.0f} rows/s, {size_r / 2**20 / secs_r:.1f} MiB/s",
        ),
    ]
    width = [max(len(row[i]) for row in lines) for i in range(3)]
    print(f"\n{'what':<{width[0]}}  {'measured':<{width[1]}}  rate")
    for what, measured, speed in lines:
        print(f"{what:<{width[0]}}  {measured:<{width[1]}}  {speed}")
    if clients.seen_rows:
        print(
            f"(count(*) seen by the queries: {min(clients.seen_rows):,}..{max(clients.seen_rows):,})"
        )
    if clients.errors:
        print(f"first errors: {clients.errors[:3]}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8, help="query threads during sync B")
    parser.add_argument(
        "--sql-concurrency", type=int, default=4, help="TG_SQL_CONCURRENCY (the default: 4)"
    )
    parser.add_argument("--budget", type=float, default=1800.0, help="per sync (s)")
    args = parse_args(parser, argv, rows=200_000, budget=300.0)

    tmp = Path(tempfile.mkdtemp(prefix="tg_sql_bench_"))
    began = time.perf_counter()
    with timer(f"source of {args.rows:,} rows up"):
        source = start_source(args.rows, args.page_size)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"source at {source.url}/items, API at {base}, {psutil.cpu_count()} cores", flush=True)
    rt = None
    try:
        rt = start_system(tmp, source.url, port, args.sql_concurrency)
        with timer("sync A (alone)"):
            alone = rate(sync_once(rt, args.budget))
        with (
            timer(f"sync B ({args.clients} query clients)"),
            Clients(base, args.clients) as clients,
        ):
            loaded = rate(sync_once(rt, args.budget))
        with timer("full read as Arrow"):
            read = full_read(base)
        report(alone, loaded, clients, read)
    finally:
        tear_down(rt, source, tmp)
    print(f"\nwhole benchmark: {time.perf_counter() - began:.0f}s")


if __name__ == "__main__":
    main()
