"""`tg up | validate | run`: parse arguments, call the runtime."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tg_actors import engines_cli
from tg_actors.config_files import load_jobs
from tg_actors.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    """Defaults < TG_* environment < flags given on the command line."""
    flags = {
        key: getattr(args, key)
        for key in ("configs", "db_path", "host", "port", "address", "engines")
        if getattr(args, key, None) is not None
    }
    return Settings(**flags)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", type=Path, help="configs folder (default: configs)")
    parser.add_argument(
        "--db", dest="db_path", type=Path, help="DuckDB file (default: data/turbo_giggle.duckdb)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tg", description="Sync HTTP APIs into DuckDB on a schedule."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything: actors, scheduler, API and UI")
    _common(up)
    up.add_argument("--host", help="bind address of the API/UI (default: 127.0.0.1)")
    up.add_argument("--port", type=int, help="port of the API/UI (default: 8000)")
    up.add_argument("--address", help="join a Ray cluster ('auto' or ray://HOST:10001)")
    up.add_argument("--engines", type=int, help="number of SyncEngine actors (default: 2)")
    validate = sub.add_parser("validate", help="validate job files")
    validate.add_argument(
        "paths", nargs="*", type=Path, help="files or folders (default: configs/jobs)"
    )
    run = sub.add_parser("run", help="run one job once on a local Ray and print a summary")
    run.add_argument("job")
    _common(run)
    run.add_argument("--no-demo", action="store_true", help="do not serve the demo source")
    engines_cli.add_parser(sub)
    return parser


def cmd_validate(args: argparse.Namespace) -> int:
    paths = args.paths or [Settings().jobs_dir]
    missing = [p for p in paths if not p.exists()]
    for path in missing:
        print(f"{path}: no such file or folder")
    report = load_jobs([p for p in paths if p.exists()])
    for error in report.errors:
        print(error)
    for name, (path, _spec) in sorted(report.jobs.items(), key=lambda kv: str(kv[1][0])):
        print(f"{path}: ok (job {name})")
    if not report.jobs and not report.errors and not missing:
        print("no job files found")
    return 1 if report.errors or missing else 0


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        print(f"\nreceived {signal.Signals(signum).name}: stopping…", flush=True)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop.is_set():
        stop.wait(0.5)


def cmd_up(args: argparse.Namespace) -> int:
    import ray

    from tg_actors import runtime

    settings = _settings(args)
    began = time.perf_counter()
    try:
        runtime.init_ray(settings)
    except (ConnectionError, RuntimeError) as exc:  # no cluster there, or no `db` node
        print(f"cannot use the Ray cluster at {settings.address}: {exc}", file=sys.stderr)
        ray.shutdown()
        return 1
    rt = runtime.start(settings)
    url = f"http://{settings.host}:{settings.port}/"
    print(f"turbo-giggle is up in {time.perf_counter() - began:.1f}s", flush=True)
    print(f"  UI:    {url}", flush=True)
    if rt.token:  # as Jupyter does: a link that signs the browser in (a cookie keeps it)
        print(f"         {url}?token={rt.token}  (opens the UI signed in)", flush=True)
    print(f"  API:   {url}api  (OpenAPI: {url}api/openapi.json)", flush=True)
    where = rt.token_file or "the TG_API_TOKEN environment variable"
    print(f"  token: {where}", flush=True)
    if rt.token_new:
        print(f"         a new API token was generated into {where} (mode 0600)", flush=True)
    print(f"  data:  {settings.db_path}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        _wait_for_signal()
    finally:
        runtime.stop(rt)
        ray.shutdown()
    print("stopped; DuckDB closed cleanly.", flush=True)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import ray

    from tg_actors import runtime
    from tg_actors.run_once import run_once, serve_demo_if_free

    settings = _settings(args).model_copy(update={"engines": 1})
    demo = None if args.no_demo else serve_demo_if_free(settings)
    runtime.init_ray(settings)
    rt = runtime.start(settings, schedules=False, serve_app=False)
    try:
        run = run_once(rt, args.job)
    finally:
        runtime.stop(rt)
        ray.shutdown()
        if demo is not None:
            demo.stop()
    if run is None:
        print(f"No job named {args.job!r} (looked in {settings.jobs_dir} and {settings.db_path})")
        return 1
    seconds = (run["finished_at"] - run["started_at"]).total_seconds() if run["started_at"] else 0.0
    print(
        f"{run['job']}: {run['state']} — {run['rows_loaded'] or 0} rows, {run['pages'] or 0} pages, "
        f"{seconds:.2f}s (run {run['run_id']})"
    )
    if run["error"]:
        print(f"error: {run['error']}")
    return 0 if run["state"] == "succeeded" else 1


def main(argv: Sequence[str] | None = None) -> int:
    from tg_actors.logs import setup

    args = build_parser().parse_args(argv)
    if args.command in ("up", "run") and not (
        args.__dict__.get("address") or os.environ.get("TG_ADDRESS")
    ):
        # read by Ray at import time: a single-node Ray then binds 127.0.0.1 only
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    setup()
    try:
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "up":
            return cmd_up(args)
        if args.command == "engines":
            return engines_cli.cmd_engines(args)
        return cmd_run(args)
    except ValidationError as exc:  # a bad flag or TG_* variable
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"])
            print(f"setting {loc}: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
