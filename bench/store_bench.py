"""The Database's own statements per trivial run, as tg.runs grows: DuckStore alone, no Ray.

    .venv/bin/python bench/store_bench.py [--sizes 1000,50000,200000,500000] [--batch 4]
        [--reps 50] [--quick]

Run by hand, never by the tests. One DuckDB file in a temporary folder, 1,000 jobs. For each
size, tg.runs is filled (ended runs, with three log lines each) up to that many rows, then
--reps times a wave of --batch trivial runs goes through what the Database does for them:
`create_runs`, `begin_attempts`, `add_logs`, `commit_runs` (one row each into table `bench`).
Printed: milliseconds a call (a call is one transaction, whatever --batch is) per kind, and
beside them the floor: a plain INSERT of --batch rows from Arrow into a table of that size
with the same two unique keys (what any insert of a run costs here).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
from benchkit import parse_args

from tg_actors.attempts import Begin, Commit
from tg_actors.jobs import WriteMode
from tg_actors.store.duckdb import DuckStore

T = TypeVar("T")
T0 = datetime(2020, 1, 1, tzinfo=UTC)
JOBS = 1000


def tick(i: int, state: str = "queued") -> dict[str, Any]:
    return {
        "job": f"j{i % JOBS}",
        "scheduled_for": T0 + timedelta(seconds=i),
        "trigger": "schedule",
        "state": state,
        "priority": 50,
    }


class Bench:
    def __init__(self, folder: Path, batch: int) -> None:
        self.store = DuckStore(folder / "store.duckdb")
        for i in range(JOBS):  # one by one: the bench runs on older commits too
            self.store.upsert_job(f"j{i}", {"name": f"j{i}"}, "file")
        self.floor = duckdb.connect(str(folder / "floor.duckdb"))
        self.floor.execute(
            "CREATE TABLE r (run_id VARCHAR PRIMARY KEY, job VARCHAR, ts TIMESTAMPTZ,"
            " UNIQUE (job, ts))"
        )
        self.batch, self.size = batch, 0

    def fill(self, upto: int) -> None:
        """Ended runs (three log lines each) until tg.runs holds `upto`; the floor's table too."""
        while self.size < upto:
            count = min(5000, upto - self.size)
            ticks = [tick(i, "succeeded") for i in range(self.size, self.size + count)]
            ids = self.store.create_runs(ticks)
            now = datetime.now(UTC)
            self.store.add_logs([(r, now, "INFO", "x") for r in ids if r] * 3)
            self._floor_insert(self.size, count)
            self.size += count

    def _floor_insert(self, start: int, count: int) -> None:
        rows = pa.table(
            {
                "run_id": [uuid.uuid4().hex for _ in range(count)],
                "job": [f"j{i % JOBS}" for i in range(start, start + count)],
                "ts": pa.array(
                    [T0 + timedelta(seconds=i) for i in range(start, start + count)],
                    pa.timestamp("us", tz="UTC"),
                ),
            }
        )
        self.floor.register("_rows", rows)
        try:
            self.floor.execute("INSERT INTO r SELECT * FROM _rows")
        finally:
            self.floor.unregister("_rows")

    def wave(self, spent: dict[str, float]) -> None:
        def timed(kind: str, fn: Callable[[], T]) -> T:
            began = time.perf_counter()
            try:
                return fn()
            finally:
                spent[kind] += time.perf_counter() - began

        first, n = self.size, self.batch
        ticks = [tick(i) for i in range(first, first + n)]
        run_ids = [r for r in timed("create", lambda: self.store.create_runs(ticks)) if r]
        begins = [Begin(r, job="j1", attempt=1) for r in run_ids]
        timed("begin", lambda: self.store.begin_attempts(begins, "e0"))
        now = datetime.now(UTC)
        timed("logs", lambda: self.store.add_logs([(r, now, "INFO", "started") for r in run_ids]))
        commits = [
            Commit(
                r,
                job="j1",
                table="bench",
                write=WriteMode.APPEND,
                pages=1,
                attempt=1,
                batch=pa.table({"id": [i]}),
            )
            for i, r in enumerate(run_ids)
        ]
        timed("commit", lambda: self.store.commit_runs(commits))
        timed("floor insert", lambda: self._floor_insert(first, n))
        self.size += n


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,50000,200000,500000")
    parser.add_argument("--batch", type=int, default=4, help="runs a transaction")
    parser.add_argument("--reps", type=int, default=50, help="waves measured at each size")
    args = parse_args(parser, argv, sizes="1000,20000", reps=20)
    folder = Path(tempfile.mkdtemp(prefix="tg_store_bench_"))
    try:
        bench = Bench(folder, args.batch)
        print(f"{args.batch} runs a transaction, {args.reps} waves; ms a call:", flush=True)
        for size in (int(s) for s in args.sizes.split(",")):
            bench.fill(size)
            spent: dict[str, float] = defaultdict(float)
            for _ in range(args.reps):
                bench.wave(spent)
            figures = ", ".join(f"{k} {v / args.reps * 1000:.1f}" for k, v in spent.items())
            print(f"  tg.runs {size:>9,}: {figures}", flush=True)
        bench.store.close()
        bench.floor.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
