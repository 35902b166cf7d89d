"""What staging a run's rows costs beside writing them into DuckDB once.

    .venv/bin/python bench/staging_bench.py [--rows 1000000] [--batch 50000] [--reps 2] [--quick]

Run by hand, never by the tests. DuckDB alone, no Ray: the rows of `sync_bench.py` (12 fields,
a struct and a list among them) in Arrow batches of --batch rows, three ways, each into a fresh
DuckDB file with the Database's memory limit:

- tg: the real DuckStore, `stage_batch` per batch (with its checkpoint) then `commit_run`
  (append): each batch is an Arrow IPC file (store/staging.py), its rows written into DuckDB
  once, at the commit;
- DuckDB staging table: what tg did before the files, by hand: every batch inserted into a
  staging table with its checkpoint, then the table copied into the target (rows written
  twice);
- floor: one INSERT of all the batches into the target, in one transaction: rows written once,
  and nothing staged.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
from benchkit import parse_args
from sync_bench import record

from tg_actors.attempts import Commit
from tg_actors.jobs import WriteMode
from tg_actors.settings import Settings
from tg_actors.sources.batches import records_to_arrow
from tg_actors.store.duckdb import DuckStore

MEMORY_LIMIT = str(Settings.model_fields["duckdb_memory_limit"].default)  # the Database's


def batches(rows: int, size: int) -> list[pa.Table]:
    one = records_to_arrow([record(i) for i in range(1, min(rows, size) + 1)])
    full, rest = divmod(rows, size)
    return [one] * full + ([one.slice(0, rest)] if rest else [])


def through_tg(path: Path, parts: list[pa.Table]) -> tuple[float, float]:
    store = DuckStore(path, memory_limit=MEMORY_LIMIT)
    run_id = store.create_run("bench", datetime.now(UTC), "manual")
    assert run_id is not None
    began = time.perf_counter()
    for i, part in enumerate(parts, 1):
        store.stage_batch(run_id, part, {"page": i}, i)
    staged = time.perf_counter() - began
    store.commit_run(Commit(run_id, table="t", write=WriteMode.APPEND, pages=len(parts)))
    total = time.perf_counter() - began
    store.close()
    return staged, total


def through_table(path: Path, parts: list[pa.Table]) -> tuple[float, float]:
    con = connect(path)
    con.execute("CREATE TABLE tg.checkpoints (run VARCHAR, pages BIGINT)")
    began = time.perf_counter()
    for i, part in enumerate(parts):
        con.register("part", part)
        con.execute("BEGIN")
        if i == 0:
            con.execute("CREATE TABLE tg.stage AS SELECT * FROM part")
        else:
            con.execute("INSERT INTO tg.stage BY NAME SELECT * FROM part")
        con.execute("INSERT INTO tg.checkpoints VALUES ('run', ?)", [i + 1])
        con.execute("COMMIT")
        con.unregister("part")
    staged = time.perf_counter() - began
    con.execute("BEGIN")
    con.execute("CREATE TABLE main.t AS SELECT * FROM tg.stage")
    con.execute("DROP TABLE tg.stage")
    con.execute("COMMIT")
    total = time.perf_counter() - began
    con.close()
    return staged, total


def floor(path: Path, parts: list[pa.Table]) -> tuple[float, float]:
    con = connect(path)
    everything = pa.concat_tables(parts)
    began = time.perf_counter()
    con.register("rows", everything)
    con.execute("BEGIN")
    con.execute("CREATE TABLE main.t AS SELECT * FROM rows")
    con.execute("COMMIT")
    total = time.perf_counter() - began
    con.close()
    return 0.0, total


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), config={"memory_limit": MEMORY_LIMIT})
    con.execute("CREATE SCHEMA tg")
    return con


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000, help="rows a staged batch")
    parser.add_argument("--reps", type=int, default=2, help="rounds of the three, A B C A B C")
    args = parse_args(parser, argv, rows=100_000, batch=10_000, reps=1)
    parts = batches(args.rows, args.batch)
    ways: list[tuple[str, Callable[[Path, list[pa.Table]], tuple[float, float]]]] = [
        ("tg: stage_batch + commit_run", through_tg),
        ("DuckDB staging table + commit", through_table),
        ("floor: one INSERT, rows once", floor),
    ]
    print(f"{args.rows:,} rows in batches of {args.batch:,}, memory_limit {MEMORY_LIMIT}:")
    folder = Path(tempfile.mkdtemp(prefix="tg_staging_bench_"))
    try:
        for rep in range(args.reps):
            for i, (label, way) in enumerate(ways):
                staged, total = way(folder / f"{rep}_{i}.duckdb", parts)
                stage = f"staged {staged:5.2f} s, " if staged else " " * 16
                print(f"  {label:30s} {stage}in the table {total:5.2f} s", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
