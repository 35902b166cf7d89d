"""The `tg` command line (typer + rich): `tg up | validate | run` here, the other commands in
the modules beside this one, each called with an argparse-style namespace of its options.

Start-up stays cheap: only typer is imported with this module; Ray, DuckDB, Arrow and the
settings are imported inside the commands that need them (`tg --version` loads none of them).
`main(argv) -> int` runs the app without click's standalone mode and returns the exit code:
0 ok, 1 a run failed or a job is invalid, 2 usage (a bad flag or setting), 3 not found (no
such job, run, file or table) or no running system answering.
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

OK, FAILED, USAGE, NOT_FOUND = 0, 1, 2, 3


class Format(enum.StrEnum):
    """`tg sql --format`."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"
    PARQUET = "parquet"


app = typer.Typer(
    name="tg",
    help="Sync HTTP APIs into DuckDB on a schedule.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# the options several commands share
Configs = Annotated[
    Path | None, typer.Option("--configs", help="configs folder (default: configs)")
]
Db = Annotated[
    Path | None,
    typer.Option(
        "--db", help="DuckDB file (default: data/turbo_giggle.duckdb; beside it api_token)"
    ),
]
Url = Annotated[
    str | None,
    typer.Option("--url", help="a running system's base URL (default: http://TG_HOST:TG_PORT)"),
]
Json = Annotated[bool, typer.Option("--json", help="print one JSON document instead")]


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("turbo-giggle")
    except PackageNotFoundError:
        try:
            return dist_version("tg_actors")
        except PackageNotFoundError:
            return "unknown"


def _print_version(value: bool) -> None:
    if value:
        print(f"tg {version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="print the version and exit"
        ),
    ] = False,
) -> None:
    from tg_actors.logs import setup

    setup()


def _ns(**values: Any) -> argparse.Namespace:
    """The options of a command as the namespace its handler reads."""
    return argparse.Namespace(**values)


def _db(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _settings(args: argparse.Namespace) -> Any:
    """Defaults < TG_* environment < flags given on the command line."""
    from tg_actors.settings import Settings

    flags = {
        key: getattr(args, key)
        for key in ("configs", "db_path", "host", "port", "address", "engines")
        if getattr(args, key, None) is not None
    }
    return Settings(**flags)


def _local_ray_env(address: str | None) -> None:
    """Before Ray is imported, for a Ray started here (no --address, no TG_ADDRESS)."""
    if address or os.environ.get("TG_ADDRESS"):
        return
    # read by Ray at import time: a single-node Ray then binds 127.0.0.1 only
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # a SIGTERM while ray.init starts our local Ray would have Ray "drain" the node for
    # 30 s (meant for Kubernetes pods) before stopping it: we stop it ourselves
    os.environ.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")


# --- tg up / validate / run ---------------------------------------------------------------------


@app.command("up")
def up_command(
    configs: Configs = None,
    db: Db = None,
    host: Annotated[
        str | None, typer.Option(help="bind address of the API/UI (default: 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="port of the API/UI (default: 8000)")] = None,
    address: Annotated[
        str | None, typer.Option(help="join a Ray cluster ('auto' or ray://HOST:10001)")
    ] = None,
    engines: Annotated[
        int | None, typer.Option(help="number of SyncEngine actors (default: 2)")
    ] = None,
) -> int:
    """Start everything: actors, scheduler, API and UI."""
    _local_ray_env(address)
    args = _ns(configs=configs, db_path=db, host=host, port=port, address=address, engines=engines)
    return cmd_up(args)


@app.command("validate")
def validate_command(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="files or folders (default: configs/jobs)")
    ] = None,
    as_json: Json = False,
) -> int:
    """Validate job files: FILE: field.path: message per error (exit 1)."""
    return cmd_validate(_ns(paths=paths or [], json=as_json))


def cmd_validate(args: argparse.Namespace) -> int:
    from tg_actors.config.files import load_jobs
    from tg_actors.settings import Settings

    paths = args.paths or [Settings().jobs_dir]
    missing = [p for p in paths if not p.exists()]
    report = load_jobs([p for p in paths if p.exists()])
    valid = sorted(report.jobs.items(), key=lambda kv: str(kv[1][0]))
    failed = bool(report.errors or missing)
    if getattr(args, "json", False):
        doc = {
            "ok": not failed,
            "jobs": [{"name": name, "path": str(path)} for name, (path, _spec) in valid],
            "errors": [str(error) for error in report.errors],
            "missing": [str(path) for path in missing],
        }
        print(json.dumps(doc, indent=2))
        return FAILED if failed else OK
    for path in missing:
        print(f"{path}: no such file or folder")
    for error in report.errors:
        print(error)
    for name, (path, _spec) in valid:
        print(f"{path}: ok (job {name})")
    if not report.jobs and not report.errors and not missing:
        print("no job files found")
    return FAILED if failed else OK


@app.command("run")
def run_command(
    job: Annotated[str, typer.Argument(metavar="JOB")],
    configs: Configs = None,
    db: Db = None,
    no_demo: Annotated[
        bool, typer.Option("--no-demo", help="do not serve the demo source")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="run here, without Ray (tg_actors.localrun)")
    ] = False,
    as_json: Json = False,
) -> int:
    """Run one job once and print a summary (rows, pages, seconds).

    On the running `tg up` that holds --db, else on a local Ray (--local: in this process,
    without Ray)."""
    _local_ray_env(None)
    args = _ns(job=job, configs=configs, db_path=db, no_demo=no_demo, local=local, json=as_json)
    return cmd_run(args)


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
        runtime.shutdown_ray()
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
    from tg_actors import runtime

    try:
        runtime.shutdown_ray()
    except Exception as exc:
        print(f"stopping Ray: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from tg_actors.cli.ops import remote_run
    from tg_actors.cli.sql import Failure

    settings = _settings(args)
    try:
        if args.local:
            return _run_local(args, settings)
        known = _job_known(settings, args.job)
        if known is None:  # a `tg up` holds the file: run it there, and follow it
            return remote_run(
                settings, None, args.job, wait=True, as_json=args.json, what="started"
            )
    except Failure as exc:
        print(exc, file=sys.stderr if exc.code else sys.stdout)
        return exc.code
    if not known:
        print(f"No job named {args.job!r} (looked in {settings.jobs_dir} and {settings.db_path})")
        return NOT_FOUND
    return _run_on_ray(args, settings)


def _job_known(settings: Any, job: str) -> bool | None:
    """Whether `job` is in the configs folder or in tg.jobs of the file (opened read-only
    here, before any Ray starts); None when a running system holds the file and its API
    answers (the run then goes there). Raises Failure when the file is held and no API
    answers, or cannot be read."""
    from tg_actors.cli.sql import Failure, _api_answers, _base_url
    from tg_actors.config.files import load_jobs

    if settings.jobs_dir.exists() and job in load_jobs([settings.jobs_dir]).jobs:
        # a configs job still runs on the system holding the file, if one does
        return None if _held(settings.db_path) and _api_answers(settings) else True
    db = settings.db_path
    if not db.is_file():
        return False
    import duckdb

    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        if "lock" not in str(exc).lower():
            raise Failure(FAILED, f"cannot open {db}: {exc}") from exc
        if _api_answers(settings):
            return None
        raise Failure(
            NOT_FOUND,
            f"{db} is held by another process (a running `tg up`?) and no API answers at "
            f"{_base_url(settings, None)} (TG_HOST, TG_PORT)",
        ) from exc
    try:
        rows = con.execute("SELECT 1 FROM tg.jobs WHERE name = ?", [job]).fetchall()
    except duckdb.CatalogException:  # no tg schema yet: no jobs in it
        rows = []
    finally:
        con.close()
    return bool(rows)


def _held(db: Path) -> bool:
    """Whether another process holds the DuckDB file (its lock refuses even a read-only open)."""
    if not db.is_file():
        return False
    import duckdb

    try:
        duckdb.connect(str(db), read_only=True).close()
    except duckdb.Error as exc:
        return "lock" in str(exc).lower()
    return False


def _run_on_ray(args: argparse.Namespace, settings: Any) -> int:
    from tg_actors import runtime
    from tg_actors.cli.ops import Progress, print_json, summary
    from tg_actors.cli.run_once import run_once, serve_demo_if_free

    settings = settings.model_copy(update={"engines": 1})
    demo = None if args.no_demo else serve_demo_if_free(settings)
    runtime.init_ray(settings, one_off=True)
    rt = runtime.start(settings, schedules=False, serve_app=False, one_off=True)
    try:
        with Progress(args.job) as progress:
            run = run_once(rt, args.job, on_progress=progress.update)
            if run is not None:  # a run shorter than the engine's progress period reports none
                progress.update(int(run["rows_loaded"] or 0), int(run["pages"] or 0))
    finally:
        closed = runtime.stop(rt)
        runtime.shutdown_ray()
        if demo is not None:
            demo.stop()
    # Ray stopped and the DuckDB file closed: the interpreter's teardown (0.4 s with Ray's
    # modules and threads) has nothing left to save (entry)
    _Exit.now = closed
    if run is None:  # the job went between the check and the run
        print(f"No job named {args.job!r} (looked in {settings.jobs_dir} and {settings.db_path})")
        return NOT_FOUND
    if args.json:
        print_json(run)
    else:
        print("\n".join(summary(run)))
    from tg_actors.runstate import RunState

    return OK if run["state"] == RunState.SUCCEEDED else FAILED


def _run_local(args: argparse.Namespace, settings: Any) -> int:
    """`tg run JOB --local`: one run in this process, no Ray (tg_actors.localrun)."""
    from tg_actors import unused
    from tg_actors.cli.ops import Progress, local_progress, print_json
    from tg_actors.errors import JobValidationError

    unused.refuse("tg run --local")  # not by tg_actors.run_job: a notebook's pandas is its own
    try:
        from tg_actors import localrun
    except ImportError as exc:
        print(f"tg run --local is not available here: {exc}", file=sys.stderr)
        return USAGE
    try:
        with Progress(args.job) as progress:
            result = localrun.run_job(
                args.job,
                db=settings.db_path,
                configs=settings.configs,
                on_progress=local_progress(progress),
            )
            progress.update(int(result.rows_loaded or 0), int(result.pages or 0))
    except JobValidationError as exc:  # a job file given as JOB that does not validate
        print(exc, file=sys.stderr)
        return FAILED
    except localrun.JobNotFound as exc:
        print(f"No job named {args.job!r}: {exc}")
        return NOT_FOUND
    except localrun.DatabaseInUse as exc:
        print(f"{exc} (without --local, `tg run` runs it on that system)", file=sys.stderr)
        return NOT_FOUND
    _Exit.now = True  # run_job closed the DuckDB file
    if args.json:
        print_json(result.as_dict())
    else:
        seconds = 0.0
        if result.started_at and result.finished_at:
            seconds = (result.finished_at - result.started_at).total_seconds()
        print(
            f"{result.job}: {result.state} — {result.rows_loaded or 0} rows, "
            f"{result.pages or 0} pages, {seconds:.2f}s (run {result.run_id})"
        )
        if result.error:
            print(f"error: {result.error}")
    return OK if result.ok else FAILED


# --- the commands of the other modules --------------------------------------------------------


@app.command("engines")
def engines_command(
    count: Annotated[
        int | None, typer.Argument(metavar="[COUNT]", help="engines wanted (1-64)")
    ] = None,
    grace: Annotated[
        float | None,
        typer.Option(
            help="seconds a removed engine's runs may take to end before they are retried on "
            "the others (default TG_STOP_GRACE_SECONDS)"
        ),
    ] = None,
    url: Url = None,
    db: Db = None,
    as_json: Json = False,
) -> int:
    """List the sync engines of a running `tg up`, or scale them to COUNT."""
    from tg_actors.cli import engines as engines_cli

    args = _ns(count=count, grace=grace, url=url, db_path=_db(db), json=as_json)
    return engines_cli.cmd_engines(args)


@app.command("export")
def export_command(
    table: Annotated[str, typer.Argument(metavar="TABLE", help="a data table (schema main)")],
    output: Annotated[
        Path, typer.Option("-o", "--output", metavar="FILE", help="the file: .parquet or .csv")
    ],
    db: Db = None,
) -> int:
    """Write a data table to a Parquet or CSV file (by its suffix)."""
    from tg_actors.cli import export as export_cli

    return export_cli.cmd_export(_ns(table=table, output=output, db_path=db))


@app.command("sql")
def sql_command(
    query: Annotated[str, typer.Argument(metavar="SQL", help="the statement (? for --param)")],
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="output (default: table)")
    ] = Format.TABLE,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", metavar="FILE", help="write there (parquet needs it)"),
    ] = None,
    params: Annotated[
        list[str] | None, typer.Option("-p", "--param", help="a ? parameter (repeatable)")
    ] = None,
    url: Url = None,
    db: Db = None,
) -> int:
    """Run one read-only SQL query on the data (the running system, or the file).

    SELECT, WITH, DESCRIBE, SUMMARIZE, SHOW… over the data tables and tg.runs /
    tg.run_logs / tg.jobs / tg.state: through the running `tg up`'s API, or on the DuckDB
    file opened read-only when nothing runs."""
    from tg_actors.cli import sql as sql_cli

    args = _ns(
        query=query, format=fmt.value, output=output, params=params or [], url=url, db_path=db
    )
    return sql_cli.cmd_sql(args)


NoWait = Annotated[bool, typer.Option("--no-wait", help="print the run id and return")]


@app.command("backfill")
def backfill_command(
    job: Annotated[str, typer.Argument(metavar="JOB")],
    start: Annotated[
        str, typer.Option("--from", metavar="T1", help="start (ISO date or datetime)")
    ],
    end: Annotated[
        str, typer.Option("--to", metavar="T2", help="end, excluded (ISO date/datetime)")
    ],
    url: Url = None,
    no_wait: NoWait = False,
    db: Db = None,
) -> int:
    """Queue a run of JOB over [--from, --to) that leaves its live cursor alone.

    A time without an offset, or a date alone, is UTC."""
    from tg_actors.cli import backfill as backfill_cli

    args = _ns(job=job, start=start, end=end, url=url, no_wait=no_wait, db_path=_db(db))
    return backfill_cli.cmd_backfill(args)


@app.command("refresh")
def refresh_command(
    job: Annotated[str, typer.Argument(metavar="JOB")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="do not ask: the table is replaced")
    ] = False,
    url: Url = None,
    no_wait: NoWait = False,
    db: Db = None,
) -> int:
    """Queue a full re-read of JOB that replaces its table when it succeeds.

    Its cursor is reset too."""
    from tg_actors.cli import backfill as backfill_cli

    args = _ns(job=job, yes=yes, url=url, no_wait=no_wait, db_path=_db(db))
    return backfill_cli.cmd_refresh(args)


@app.command("schema")
def schema_command(
    output: Annotated[
        str | None, typer.Option("-o", "--output", metavar="FILE", help="write it to FILE")
    ] = None,
) -> int:
    """Print the JSON Schema of a job file (for editors)."""
    from tg_actors.cli import schema as schema_cli

    return schema_cli.cmd_schema(_ns(output=output))


@app.command("init")
def init_command(
    directory: Annotated[str, typer.Argument(metavar="DIR")] = ".",
    force: Annotated[bool, typer.Option("--force", help="replace files that exist")] = False,
) -> int:
    """Make a new project folder: configs/jobs/ with an example job, and the schema."""
    from tg_actors.cli import init as init_cli

    return init_cli.cmd_init(_ns(dir=directory, force=force))


@app.command("preview")
def preview_command(
    job: Annotated[str, typer.Argument(metavar="JOB|FILE", help="a job file, or a job's name")],
    pages: Annotated[int, typer.Option(help="pages to read (1-20)")] = 3,
    records: Annotated[int, typer.Option(help="sample size (1-100)")] = 5,
    as_json: Json = False,
    url: Annotated[
        str | None, typer.Option(help="test-read on that running system instead of here")
    ] = None,
    configs: Configs = None,
    db: Db = None,
) -> int:
    """Test-read a job: requests, records, column types, stop reason; writes nothing."""
    from tg_actors.cli import preview as preview_cli

    args = _ns(
        job=job, pages=pages, records=records, json=as_json, url=url, configs=configs, db_path=db
    )
    return preview_cli.cmd_preview(args)


# --- operating a running system ---------------------------------------------------------------


@app.command("jobs")
def jobs_command(url: Url = None, db: Db = None, as_json: Json = False) -> int:
    """List the jobs of a running `tg up`: schedule, paused, last run, next run."""
    from tg_actors.cli.ops import cmd_jobs

    return cmd_jobs(url, _db(db), as_json)


@app.command("runs")
def runs_command(
    job: Annotated[str | None, typer.Option("--job", help="only this job's runs")] = None,
    state: Annotated[str | None, typer.Option("--state", help="only runs in this state")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most N runs")] = 20,
    url: Url = None,
    db: Db = None,
    as_json: Json = False,
) -> int:
    """List the runs of a running `tg up`, newest first."""
    from tg_actors.cli.ops import cmd_runs

    return cmd_runs(url, _db(db), job, state, limit, as_json)


@app.command("logs")
def logs_command(
    run: Annotated[str, typer.Argument(metavar="RUN", help="a run id")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing until the run ends")
    ] = False,
    url: Url = None,
    db: Db = None,
    as_json: Json = False,
) -> int:
    """Print the log lines of a run (with -f, as they come, until it ends)."""
    from tg_actors.cli.ops import cmd_logs

    return cmd_logs(url, _db(db), run, follow, as_json)


@app.command("trigger")
def trigger_command(
    job: Annotated[str, typer.Argument(metavar="JOB")],
    wait: Annotated[
        bool, typer.Option("--wait", help="follow the run, with a progress line, until it ends")
    ] = False,
    url: Url = None,
    db: Db = None,
    as_json: Json = False,
) -> int:
    """Queue a run of JOB on a running `tg up` now."""
    from tg_actors.cli.ops import cmd_trigger

    return cmd_trigger(url, _db(db), job, wait, as_json)


class _Exit:
    """Set by a command after which this process holds nothing to tear down."""

    now = False


def entry() -> None:
    """The `tg` script: main(), then exit. After `tg run --local` the interpreter's own
    teardown (its extension modules, Arrow's and DuckDB's threads) took 0.15 s, a sixth of a
    10,000-row run, with nothing left to save (the DuckDB file is closed): logs and output are
    flushed, then os._exit. Any other command exits as Python does."""
    code = main()
    if _Exit.now:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = command.main(args=args, prog_name="tg", standalone_mode=False)
    except typer.Abort:  # Ctrl-C or end of input at a prompt
        print("aborted", file=sys.stderr)
        return FAILED
    except typer.TyperException as exc:  # click's errors: a usage error is exit 2
        from typer import rich_utils
        from typer._click.exceptions import ClickException  # typer 0.29 vendors click

        if isinstance(exc, ClickException):
            rich_utils.rich_format_error(exc)
            return exc.exit_code
        print(exc, file=sys.stderr)
        return USAGE
    except Exception as exc:
        pydantic = sys.modules.get("pydantic")  # loaded by whatever raised its error
        if pydantic is None or not isinstance(exc, pydantic.ValidationError):
            raise
        for err in exc.errors(include_url=False):  # a bad flag or TG_* variable
            loc = ".".join(str(p) for p in err["loc"])
            print(f"setting {loc}: {err['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return USAGE
    return code if isinstance(code, int) else OK


if __name__ == "__main__":
    sys.exit(main())
