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

from tg_actors.cli import backfill as backfill_cli
from tg_actors.cli import engines as engines_cli
from tg_actors.cli import export as export_cli
from tg_actors.cli import init as init_cli
from tg_actors.cli import preview as preview_cli
from tg_actors.cli import schema as schema_cli
from tg_actors.cli import sql as sql_cli
from tg_actors.config.files import load_jobs
from tg_actors.runstate import RunState
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
    export_cli.add_parser(sub)
    sql_cli.add_parser(sub)
    backfill_cli.add_parser(sub)
    schema_cli.add_parser(sub)
    init_cli.add_parser(sub)
    preview_cli.add_parser(sub)
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


class StopRequested(BaseException):
    """A signal during start-up: unwinds start-up to the clean stop (a BaseException, so no
    `except Exception` on the way swallows it)."""


class Signals:
    """SIGINT and SIGTERM for `tg up`. While starting (`interrupting`), the first signal
    raises StopRequested wherever start-up is; once up, it only wakes `wait()`. Any signal
    after the first is noted and ignored: the stop under way finishes (each step of it is
    bounded)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.interrupting = True
        self._event = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            print(f"received {name}: already stopping…", flush=True)
            return
        self.received = name
        print(f"\nreceived {name}: stopping…", flush=True)
        self._event.set()
        if self.interrupting:
            raise StopRequested(name)

    def wait(self) -> None:
        while not self._event.wait(0.5):
            pass


def cmd_up(args: argparse.Namespace) -> int:
    import ray

    from tg_actors import runtime

    settings = _settings(args)
    began = time.perf_counter()
    signals = Signals()
    signals.install()
    rt = runtime.Runtime(settings)  # filled in as start-up goes: a stop stops what was started
    try:
        try:
            runtime.init_ray(settings)
        except SystemExit:
            # ray.init installs SIGTERM handlers of its own (sys.exit) while it starts Ray:
            # a SIGTERM then exits from inside it, Ray's processes already stopped
            if signals.received is None:
                signals.received = "SIGTERM"
                print("\nreceived SIGTERM: stopping…", flush=True)
            raise StopRequested("SIGTERM") from None
        except (ConnectionError, RuntimeError) as exc:  # no cluster there, or no `db` node
            signals.interrupting = False
            print(f"cannot use the Ray cluster at {settings.address}: {exc}", file=sys.stderr)
            _shutdown_ray()
            return 1
        finally:
            signals.install()  # ours again, over Ray's
        runtime.start(settings, rt=rt)
        if signals.received:  # a signal that start-up code swallowed on its way
            raise StopRequested(signals.received)
        signals.interrupting = False
    except StopRequested:
        signals.interrupting = False
        return _stop_early(rt)
    except Exception as exc:
        signals.interrupting = False
        if signals.received is not None:
            # the signal's StopRequested, raised inside code that turned it into an error of
            # its own (e.g. a C extension's SystemError): still the stop asked for
            return _stop_early(rt)
        # an actor, Serve or the token could not start: stop the rest
        print(f"tg up could not start: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        _stop_early(rt)
        return 1
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
        signals.wait()
    finally:
        runtime.stop(rt)
        ray.shutdown()
    print("stopped; DuckDB closed cleanly.", flush=True)
    return 0


def _stop_early(rt: Any) -> int:
    """Stop what start-up had started (a signal came first); exit 0, no traceback."""
    import ray

    from tg_actors import runtime

    closed = False
    try:
        closed = runtime.stop(rt) if ray.is_initialized() else False
    except Exception as exc:  # best-effort here: nothing may escape as a traceback
        print(f"stopping: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    _shutdown_ray()
    tail = "; DuckDB closed cleanly." if closed else "."
    print(f"stopped before start-up finished{tail}", flush=True)
    return 0


def _shutdown_ray() -> None:
    import ray

    try:
        ray.shutdown()
    except Exception as exc:
        print(f"stopping Ray: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    import ray

    from tg_actors import runtime
    from tg_actors.cli.run_once import run_once, serve_demo_if_free

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
    return 0 if run["state"] == RunState.SUCCEEDED else 1


def main(argv: Sequence[str] | None = None) -> int:
    from tg_actors.logs import setup

    args = build_parser().parse_args(argv)
    if args.command in ("up", "run") and not (
        args.__dict__.get("address") or os.environ.get("TG_ADDRESS")
    ):
        # read by Ray at import time: a single-node Ray then binds 127.0.0.1 only
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        # a SIGTERM while ray.init starts our local Ray would have Ray "drain" the node for
        # 30 s (meant for Kubernetes pods) before stopping it: we stop it ourselves
        os.environ.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")
    setup()
    try:
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "up":
            return cmd_up(args)
        if args.command == "engines":
            return engines_cli.cmd_engines(args)
        if args.command == "export":
            return export_cli.cmd_export(args)
        if args.command == "sql":
            return sql_cli.cmd_sql(args)
        if getattr(args, "handler", None) is not None:  # a command that names its handler
            return int(args.handler(args))
        return cmd_run(args)
    except ValidationError as exc:  # a bad flag or TG_* variable
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"])
            print(f"setting {loc}: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
