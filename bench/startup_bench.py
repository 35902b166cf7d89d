"""One-off run end to end, whole process: `tg run --local` vs `tg run` vs dlt, 10,000 rows.

    .venv/bin/python bench/startup_bench.py [--rows 10000] [--repeat 5] [--skip-dlt]

Run by hand, never by the tests. The source is sync_bench's (12 fields, 1,000 a page,
`next` links, served from pre-serialised bytes by its own process on 127.0.0.1). Each round
runs A B C in turn, each into a fresh DuckDB file, and times the whole process from exec to
exit (interpreter start, imports, Ray's start and stop where there is one, the sync):

- A: `tg run bench_append --local` (no Ray; tg_actors.run_job);
- B: `tg run bench_append` (a fresh local Ray, the actors a one-off run needs);
- C: dlt `rest_api` into DuckDB with the parquet loader, in a fresh interpreter
  (`uv sync --group bench` installs dlt).

It prints the median and the spread of each, and each one's ratio to dlt. The rows each
process landed are counted in its DuckDB file afterwards: a run that lands fewer fails the
bench rather than look fast.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb
from benchkit import parse_args  # first: it keeps the local Ray (tg run's too) on 127.0.0.1
from sync_bench import DLT_ENV, DLT_REST, have_dlt, start_source, write_jobs

TG = str(Path(sys.executable).parent / "tg")


def landed(db: Path, table: str) -> int:
    """Rows of `table` ("name" or "schema.name") in the DuckDB file `db`."""
    quoted = ".".join(f'"{part}"' for part in table.split("."))
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute(f"SELECT count(*) FROM {quoted}").fetchone()
    return int(row[0]) if row else 0


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """The whole process's wall time; raises with its output when it fails."""
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr[-4000:]}"
        )
    return wall


def tg_round(tmp: Path, n: int, local: bool) -> tuple[float, int]:
    db = tmp / f"tg_{'local' if local else 'ray'}_{n}.duckdb"
    command = [TG, "run", "bench_append", "--configs", str(tmp / "configs"), "--db", str(db)]
    command += ["--local"] if local else ["--no-demo"]
    wall = timed(command, tmp, dict(os.environ))
    return wall, landed(db, "items")


def dlt_round(tmp: Path, n: int, url: str) -> tuple[float, int]:
    work = tmp / f"dlt_{n}"
    work.mkdir()
    db = work / "dlt.duckdb"
    command = [sys.executable, str(DLT_REST), "--url", url, "--write"]
    command += ["append", "--db", str(db), "--workdir", str(work), "--paginate", "next_url"]
    command += ["--dlt-format", "parquet"]
    env = {**os.environ, **DLT_ENV, "DLT_DATA_DIR": str(work / "data")}
    wall = timed(command, work, env)
    return wall, landed(db, "bench.items")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-dlt", action="store_true")
    parser.add_argument("--skip-ray", action="store_true", help="leave out `tg run` on Ray")
    args = parse_args(parser, argv, rows=2_000, repeat=1)
    tmp = Path(tempfile.mkdtemp(prefix="tg_startup_bench_"))
    server = start_source(args.rows, args.page_size)
    walls: dict[str, list[float]] = {}
    try:
        write_jobs(tmp / "configs", server.url, "next_url", args.page_size)
        dlt = not args.skip_dlt and have_dlt()
        if not args.skip_dlt and not dlt:
            print("dlt skipped: not installed (uv sync --group bench)")
        print(f"{args.rows:,} rows, {args.page_size} a page, served at {server.url}", flush=True)
        for n in range(args.repeat):
            kinds = ["tg run --local"] + ([] if args.skip_ray else ["tg run (Ray)"])
            kinds += ["dlt (parquet)"] if dlt else []
            for what in kinds:
                if what == "dlt (parquet)":
                    wall, rows = dlt_round(tmp, n, server.url)
                else:
                    wall, rows = tg_round(tmp, n, local=what == "tg run --local")
                if rows != args.rows:
                    raise RuntimeError(f"{what} landed {rows} rows, not {args.rows}")
                walls.setdefault(what, []).append(wall)
                print(f"  round {n + 1}: {what:<15} {wall:6.2f} s", flush=True)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    anchor = statistics.median(walls["dlt (parquet)"]) if "dlt (parquet)" in walls else None
    print(f"\nwhole process, median of {args.repeat} (min-max), {args.rows:,} rows:")
    for what, values in walls.items():
        median = statistics.median(values)
        ratio = f"{anchor / median:5.2f}x dlt" if anchor else ""
        print(f"  {what:<15} {median:6.2f} s ({min(values):.2f}-{max(values):.2f})  {ratio}")


if __name__ == "__main__":
    main()
