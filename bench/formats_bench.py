"""`source.format` throughput: the same records as JSON pages, JSON lines pages and CSV pages.

    .venv/bin/python bench/formats_bench.py [--rows 1000000] [--page-size 1000] [--quick]
    .venv/bin/python bench/formats_bench.py --in-process   # Ray in this process (--quick's way)

Run by hand, never by the tests. One run:

1. one uvicorn process on 127.0.0.1 serves `--rows` records of sync_bench's 12 fields,
   `--page-size` a page, from pre-serialised bytes, three ways: JSON pages at `/json/items`
   (`{"data": [...], "next": URL}`, as sync_bench), JSON lines pages at `/jsonl/items` and CSV
   pages (a header row each) at `/csv/items`, those two chained by a `Next-Page` response
   header. CSV has no nesting: its `address` and `tags` cells hold the JSON text;
2. per format, the fetch+parse limit in this process (httpx, sequential, pages by number):
   JSON by orjson (and orjson + `records_to_arrow`, the engine's JSON path to Arrow), JSON
   lines and CSV by `tg_actors.sources.formats.to_table` (pyarrow.json / pyarrow.csv, as the
   engine reads them); and the server alone (fetch only, 4 at once) for its headroom;
3. per format, `tg run` of an append job into a fresh DuckDB table (its own local Ray, as
   sync_bench): its rows/s is the run's own (rows / the run's seconds, Ray start-up not in it);
   `--in-process` (`--quick`'s default) triggers the same jobs on one runtime in this process.

Target: JSON lines and CSV at least as fast as JSON pages through `tg run` (ratio >= 1.00).

Measured on a 2-core machine (server, client and Ray share them, so the server's own rate
bounds the limits: read the ratios, not the absolutes), `.venv/bin/python bench/formats_bench.py`
(1,000,000 rows, tg run):

    what                                         rows/s   vs json
    json  server: fetch only, 4 at once         297,210
    jsonl server: fetch only, 4 at once         282,298
    csv   server: fetch only, 4 at once         551,646
    json  limit: fetch + orjson                 171,413
    json  limit: fetch + orjson + records_to_arrow  107,599
    jsonl limit: fetch + pyarrow.json (to_table)    276,778   2.57x
    csv   limit: fetch + pyarrow.csv (to_table)     526,321   4.89x
    json  tg run (12.43s)                        80,451   1.00x
    jsonl tg run  (9.00s)                       111,111   1.38x
    csv   tg run  (5.11s)                       195,695   2.43x

`--quick` (100,000 rows, in-process, 38 s in all): json 44,490, jsonl 72,028 (1.62x), csv
72,641 rows/s (1.63x). Target met: JSON lines and CSV are faster than JSON pages.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from benchkit import (  # first: it keeps the local Ray (tg run's too) on 127.0.0.1
    ServerProcess,
    listen,
    parse_args,
    query_of,
    run_asgi,
    send_body,
    start_runtime,
    stop_runtime,
)
from sync_bench import Result, fetch_pages, record, run_tg

HERE = Path(__file__).resolve()
FORMATS = ("json", "jsonl", "csv")
TYPES = {"json": b"application/json", "jsonl": b"application/x-ndjson", "csv": b"text/csv"}
FIELDS = list(record(1))

# --- the source: one process, three formats ----------------------------------------------------


def csv_page(records: list[dict[str, Any]]) -> bytes:
    """A CSV page: a header row, then the records; nested values (address, tags) as JSON
    text, None as an empty cell, booleans as true/false."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for r in records:
        row = []
        for value in r.values():
            if isinstance(value, dict | list):
                value = orjson.dumps(value).decode()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            elif value is None:
                value = ""
            row.append(value)
        writer.writerow(row)
    return out.getvalue().encode()


def build_pages(rows: int, size: int, base: str) -> dict[str, list[tuple[bytes, bytes | None]]]:
    """{format: [(body, the Next-Page URL or None)]}: JSON's next URL is in its body."""
    count = max(1, -(-rows // size))
    pages: dict[str, list[tuple[bytes, bytes | None]]] = {f: [] for f in FORMATS}
    for n in range(1, count + 1):
        data = [record(i) for i in range((n - 1) * size + 1, min(n * size, rows) + 1)]
        last = n == count
        nxt = {f: None if last else f"{base}/{f}/items?page={n + 1}" for f in FORMATS}
        body = {"data": data, "page": n, "total": rows, "total_pages": count, "next": nxt["json"]}
        pages["json"].append((orjson.dumps(body), None))
        jsonl = b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in data)
        for fmt, page in (("jsonl", jsonl), ("csv", csv_page(data))):
            link = nxt[fmt]
            pages[fmt].append((page, link.encode() if link else None))
    return pages


def serve(rows: int, size: int) -> None:
    """The server process: bind, print the port, build the pages, serve until terminated."""
    sock, base = listen()
    pages = build_pages(rows, size, base)
    empty = {"json": orjson.dumps({"data": [], "next": None}), "jsonl": b"", "csv": b""}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        fmt, _, rest = scope["path"].strip("/").partition("/")
        if fmt in pages and rest == "items":
            n = int(query_of(scope).get(b"page", b"1"))
            body, link = pages[fmt][n - 1] if 1 <= n <= len(pages[fmt]) else (empty[fmt], None)
            extra = [(b"next-page", link)] if link else []
            await send_body(send, body, content_type=TYPES[fmt], extra=extra)
        elif scope["path"] == "/health":
            await send_body(send, b'{"status":"ok"}')
        else:
            await send_body(send, b'{"detail":"not found"}', 404)

    run_asgi(app, sock, loop="uvloop", http="httptools")


def start_source(rows: int, size: int) -> ServerProcess:
    command = [sys.executable, str(HERE), "--role", "server"]
    command += ["--rows", str(rows), "--page-size", str(size)]
    return ServerProcess(command, ready_s=600)  # it builds every page before it listens


# --- (a) the fetch+parse limit -------------------------------------------------------------------


def measure_limit(url: str, rows: int, size: int) -> list[Result]:
    from tg_actors.sources.batches import records_to_arrow
    from tg_actors.sources.formats import to_table

    records_to_arrow([{"warm_up": 1}])
    pages = max(1, -(-rows // size))

    def json_rows(body: bytes) -> int:
        return len(orjson.loads(body)["data"])

    def json_arrow(body: bytes) -> int:
        return int(records_to_arrow(orjson.loads(body)["data"]).num_rows)

    def table_rows(fmt: str) -> Callable[[bytes], int]:
        return lambda body: int(to_table(body, fmt).num_rows)  # type: ignore[arg-type]

    runs: list[tuple[str, str, int, Callable[[bytes], int] | None]] = [
        ("json", "server: fetch only, 4 at once", 4, None),
        ("jsonl", "server: fetch only, 4 at once", 4, None),
        ("csv", "server: fetch only, 4 at once", 4, None),
        ("json", "limit: fetch + orjson", 1, json_rows),
        ("json", "limit: fetch + orjson + records_to_arrow", 1, json_arrow),
        ("jsonl", "limit: fetch + pyarrow.json (to_table)", 1, table_rows("jsonl")),
        ("csv", "limit: fetch + pyarrow.csv (to_table)", 1, table_rows("csv")),
    ]
    results = []
    for fmt, what, concurrency, handle in runs:
        got, seconds = asyncio.run(
            fetch_pages(f"{url}/{fmt}", pages, concurrency, handle or (lambda body: size))
        )
        if handle is not None and got != rows:
            print(f"  warning: {fmt} {what}: {got} rows, expected {rows}")
        results.append(Result(f"{fmt:5} {what}", min(got, rows), seconds))
        print(f"  {results[-1].what}: {results[-1].rate:,.0f} rows/s", flush=True)
    return results


# --- (b) tg run ----------------------------------------------------------------------------------

JOB = """name: bench_{fmt}
source:
  url: {url}/{fmt}/items
  format: {fmt}
{how}
  timeout: 120s
destination: {{table: items_{fmt}, write: append, primary_key: [id]}}
timeout: 60m
"""
HOW = {
    "json": '  records: "$.data"\n  paginate: {type: next_url, path: "$.next"}',
    "jsonl": "  paginate: {type: next_url, header: Next-Page}",
    "csv": "  paginate: {type: next_url, header: Next-Page}",
}


def write_jobs(configs: Path, url: str) -> None:
    jobs = configs / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    for fmt in FORMATS:
        (jobs / f"bench_{fmt}.yaml").write_text(JOB.format(fmt=fmt, url=url, how=HOW[fmt]))


def run_in_process(tmp: Path) -> list[Result]:
    """--in-process (--quick's default): the three jobs triggered on one runtime, Ray in this
    process (one Ray start, not three); a run's rate is over its started..finished span."""
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
        for fmt in FORMATS:
            t0 = time.perf_counter()
            run_id = ray.get(rt.scheduler.trigger.remote(f"bench_{fmt}"))
            while (run := ray.get(rt.db.get_run.remote(run_id)))["state"] not in (
                "succeeded",
                "failed",
            ):
                time.sleep(0.02)
            wall = time.perf_counter() - t0
            if run["state"] != "succeeded":
                print(f"  bench_{fmt}: {run['state']}: {run.get('error')}", flush=True)
                continue
            seconds = (run["finished_at"] - run["started_at"]).total_seconds()
            results.append(Result(f"{fmt:5} tg (in-process)", run["rows_loaded"], seconds, wall))
            print(f"  bench_{fmt}: {run['rows_loaded']} rows, {seconds:.2f}s", flush=True)
    finally:
        stop_runtime(rt)
        ray.shutdown()
    return results


# --- report --------------------------------------------------------------------------------------


def report(results: Sequence[Result]) -> None:
    print(f"\n{'what':52} {'measured':>22} {'rows/s':>11} {'vs json':>8}")
    tg = {r.what.split()[0]: r for r in results if " tg " in f" {r.what}"}
    arrow = next((r for r in results if r.what.endswith("records_to_arrow")), None)
    for r in results:
        measured = f"{r.rows:,} rows {r.seconds:6.2f}s"
        vs = ""
        if r in tg.values() and "json" in tg and tg["json"].rate:
            vs = f"{r.rate / tg['json'].rate:.2f}x"
        elif "pyarrow" in r.what and arrow is not None and arrow.rate:
            vs = f"{r.rate / arrow.rate:.2f}x"
        print(f"{r.what:52} {measured:>22} {r.rate:11,.0f} {vs:>8}")
    print(
        "\n`vs json`: a tg run's rate over the JSON one's; a pyarrow limit's over fetch + orjson"
        " + records_to_arrow's (both end in Arrow)"
    )
    if "json" in tg and tg["json"].rate:
        ratios = [tg[f].rate / tg["json"].rate for f in ("jsonl", "csv") if f in tg]
        met = len(ratios) == 2 and min(ratios) >= 1.0
        print(f"target (JSON lines and CSV runs >= JSON's rows/s): {'met' if met else 'NOT met'}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--skip-tg", action="store_true")
    parser.add_argument("--in-process", action="store_true", help="Ray in this process, no CLI")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--role", default="bench", help=argparse.SUPPRESS)
    args = parse_args(parser, argv, rows=100_000, in_process=True)  # one Ray start, not three
    if args.role == "server":
        return serve(args.rows, args.page_size)

    tmp = Path(tempfile.mkdtemp(prefix="tg_formats_bench_"))
    t0 = time.perf_counter()
    server = start_source(args.rows, args.page_size)
    results: list[Result] = []
    failed: list[str] = []
    try:
        print(f"{args.rows:,} rows, {args.page_size} a page, served at {server.url}", flush=True)
        print(f"  pages built and served in {time.perf_counter() - t0:.1f}s", flush=True)
        write_jobs(tmp / "configs", server.url)
        print("(a) the fetch+parse limit, one process", flush=True)
        results += measure_limit(server.url, args.rows, args.page_size)
        if args.skip_tg:
            pass
        elif args.in_process:
            print("(b) turbo-giggle, Ray in this process (the jobs tg run runs)", flush=True)
            results += run_in_process(tmp)
            failed += [
                f for f in FORMATS if f"{f:5} tg (in-process)" not in {r.what for r in results}
            ]
        else:
            print("(b) turbo-giggle: tg run, an append into a fresh table", flush=True)
            for fmt in FORMATS:
                try:
                    result = run_tg(f"bench_{fmt}", tmp, args.rows, None)
                except RuntimeError as exc:  # the exact error and the run's log, then go on
                    print(f"  {exc}", flush=True)
                    failed.append(fmt)
                    continue
                result.what = f"{fmt:5} tg run"
                results.append(result)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report(results)
    if failed:
        raise SystemExit(f"tg run failed for: {', '.join(failed)}")


if __name__ == "__main__":
    main()
