"""dlt's side of sync_bench and startup_bench: one `rest_api` pipeline run into DuckDB.

    python bench/dlt_rest.py --url URL --write append|merge --db FILE --workdir DIR
        [--paginate next_url|page] [--dlt-format parquet|default]

A script of its own that imports only the standard library and dlt, so that a whole-process
time (startup_bench) is dlt's and none of the benchmark's. Prints one JSON line: rows,
seconds (the pipeline's extract + normalize + load) and the time of each step.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any


def run(url: str, write: str, db: str, workdir: str, paginate: str, file_format: str) -> None:
    import dlt
    from dlt.sources.rest_api import rest_api_source

    paginator: dict[str, Any] = {"type": "json_link", "next_url_path": "next"}
    if paginate == "page":
        paginator = {"type": "page_number", "base_page": 1, "total_path": "total_pages"}
    endpoint = {"path": "items", "params": {"page": 1}, "data_selector": "data"}
    source = rest_api_source(
        {
            "client": {"base_url": url, "paginator": paginator},
            "resources": [
                {"name": "items", "endpoint": endpoint, "write_disposition": write}
                | {"primary_key": "id"}
            ],
        }
    )
    # root keys on the nested table (tags) from the first run, so the merge run can update
    # the rows the append run loaded (dlt refuses to add them to a filled table later)
    source.root_key = True
    pipeline = dlt.pipeline(
        pipeline_name="tg_bench",
        destination=dlt.destinations.duckdb(db),
        dataset_name="bench",
        pipelines_dir=workdir,
    )
    # dlt's default file format for duckdb is insert_values (SQL text)
    timed_run(pipeline, source, "items", None if file_format == "default" else file_format)


def timed_run(pipeline: Any, source: Any, table: str, loader_format: Any) -> None:
    """One extract + normalize + load of `source`, timed per step; prints the JSON line (rows
    of `table`, seconds, steps). Also fanout_bench's dlt side."""
    steps = {}
    started = time.perf_counter()
    pipeline.extract(source, loader_file_format=loader_format)
    steps["extract"] = time.perf_counter() - started
    info = pipeline.normalize()
    steps["normalize"] = time.perf_counter() - started - steps["extract"]
    pipeline.load()
    seconds = time.perf_counter() - started
    steps["load"] = seconds - steps["extract"] - steps["normalize"]
    counts = info.row_counts if info is not None else {}
    print(json.dumps({"rows": counts.get(table, 0), "seconds": seconds, "steps": steps}))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--write", choices=("append", "merge"), required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--paginate", choices=("next_url", "page"), default="next_url")
    parser.add_argument("--dlt-format", choices=("parquet", "default"), default="parquet")
    args = parser.parse_args(argv)
    run(args.url, args.write, args.db, args.workdir, args.paginate, args.dlt_format)


if __name__ == "__main__":
    main()
