"""Page -> Arrow candidates on one page of sync_bench's records (12 fields, an object, a list).

    .venv/bin/python bench/convert_bench.py [--page-size 1000] [--rounds 5] [--quick] [--wire]

Prints the best of --rounds rounds, in ms a page. "dicts" candidates start from the parsed records
(what `HttpSourceClient` yields today); "raw" ones from the response body bytes. Only
`records_to_arrow` and `reference` keep every rule of batches.py; the notes say what the
others change. --wire instead times one staged batch (50 such pages in one table) sent to
another process and read there, as Ray's own reducer for a Table does it and as an Arrow IPC
stream (tg_actors/wire.py), both pickled with protocol 5 and out-of-band buffers, as Ray pickles what it sends.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
from collections.abc import Callable
from typing import Any

import benchkit
import duckdb
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.json as pj
from sync_bench import build_pages

from tg_actors.records import select_records
from tg_actors.sources.batches import records_to_arrow


def reference(records: list[dict[str, Any]]) -> pa.Table:
    """records_to_arrow before: a list comprehension per column."""

    def column(values: list[Any]) -> pa.Array:
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return pa.array(
                [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
            )

    names = list(dict.fromkeys(key for record in records for key in record))
    return pa.table({name: column([r.get(name) for r in records]) for name in names})


def no_views(table: pa.Table) -> pa.Table:
    """polars' Arrow types -> the ones records_to_arrow gives (string_view breaks Ray's path)."""
    return table.cast(pa.schema([pa.field(f.name, _plain(f.type)) for f in table.schema]))


def _plain(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_list(t):
        return pa.list_(_plain(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _plain(f.type)) for f in t])
    return t


def wire(page_size: int, rounds: int) -> None:
    import pickle

    from ray._private import arrow_serialization

    from tg_actors.wire import from_ipc, to_ipc

    pages = build_pages(page_size * 50, page_size, "http://127.0.0.1:1")
    table = pa.concat_tables([records_to_arrow(orjson.loads(b)["data"]) for b in pages])

    def rays() -> pa.Table:
        rebuild, args = arrow_serialization._arrow_table_reduce(table)
        buffers: list[pickle.PickleBuffer] = []
        data = pickle.dumps(args, protocol=5, buffer_callback=buffers.append)
        return rebuild(*pickle.loads(data, buffers=buffers))

    def ipc() -> pa.Table:
        buffers: list[pickle.PickleBuffer] = []
        data = pickle.dumps(to_ipc(table), protocol=5, buffer_callback=buffers.append)
        return from_ipc(pickle.loads(data, buffers=buffers))

    print(
        f"one staged batch: {table.num_rows:,} rows, {table.nbytes / 2**20:.1f} MiB, "
        f"{table.column(0).num_chunks} chunks a column"
    )
    for name, fn in (("Ray's Table reducer", rays), ("Arrow IPC stream (wire.py)", ipc)):
        assert fn().equals(table)
        best = min(_timed(fn, 10) for _ in range(rounds))
        print(f"  {name:30} {best * 1e3:6.2f} ms  {table.num_rows / best:12,.0f} rows/s")


def _timed(fn: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5, help="best of N rounds of 40 calls")
    parser.add_argument("--wire", action="store_true", help="a staged batch between processes")
    args = benchkit.parse_args(parser, page_size=200, rounds=2)
    if args.wire:
        wire(args.page_size, args.rounds)
        return
    body = build_pages(args.page_size, args.page_size, "http://127.0.0.1:1")[0]
    parsed = orjson.loads(body)
    records = parsed["data"]
    con = duckdb.connect()

    def digest() -> bytes:  # the paginator's loop guard, per page
        data = orjson.dumps(records, option=orjson.OPT_SORT_KEYS, default=str)
        return hashlib.blake2b(data, digest_size=16).digest()

    def pyarrow_json() -> pa.Table:
        options = pj.ReadOptions(block_size=len(body) + 1)
        table = pj.read_json(io.BytesIO(body), read_options=options)
        return pa.Table.from_struct_array(table.column("data").chunk(0).values)

    def polars_json() -> pa.Table:
        df = pl.read_json(io.BytesIO(body), infer_schema_length=None)
        return no_views(df.select(pl.col("data").explode()).unnest("data").to_arrow())

    def duckdb_json() -> pa.Table:
        rel = con.read_json(io.BytesIO(body)).select("unnest(data, recursive := false)")
        return rel.to_arrow_table()

    candidates: list[tuple[str, Callable[[], object], str]] = [
        ("dicts: orjson.loads(body)", lambda: orjson.loads(body), "parse only"),
        (
            "dicts: select_records(body, '$.data')",
            lambda: select_records(parsed, "$.data"),
            "jsonpath_ng",
        ),
        ("dicts: loop-guard digest", digest, "orjson sort_keys + blake2b"),
        ("dicts: records_to_arrow (now)", lambda: records_to_arrow(records), ""),
        ("dicts: reference (before)", lambda: reference(records), ""),
        (
            "dicts: pa.array(records) + from_struct",
            lambda: pa.Table.from_struct_array(pa.array(records)),
            "same types here",
        ),
        (
            "dicts: pa.Table.from_pylist",
            lambda: pa.Table.from_pylist(records),
            "types from the first row only",
        ),
        ("raw: pyarrow.json.read_json", pyarrow_json, "ISO strings -> timestamp"),
        ("raw: polars.read_json + unnest", polars_json, "int+str -> str; + casts"),
        ("raw: duckdb read_json(BytesIO)", duckdb_json, "ISO strings -> timestamp"),
    ]
    totals: dict[str, float] = {}
    print(f"one page: {args.page_size} records, {len(body):,} bytes of JSON")
    for name, fn, note in candidates:
        fn()
        rounds = []
        for _ in range(args.rounds):
            n = 40
            started = time.perf_counter()
            for _ in range(n):
                fn()
            rounds.append((time.perf_counter() - started) / n)
        best = min(rounds)
        rate = args.page_size / best
        print(f"  {name:42} {best * 1e3:6.2f} ms {rate:12,.0f} rows/s  {note}")
        totals[name] = best
    chain = [n for n in totals if n.startswith("dicts:") and "before" not in n][:4]
    print(
        f"  dicts chain (parse, select, digest, records_to_arrow): {sum(totals[n] for n in chain) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
