"""`tg jobs`, `tg runs`, `tg logs RUN [-f]`, `tg trigger JOB [--wait]`: operate a running
`tg up` through its HTTP API (tg_actors.client), the URL and token found as `tg sql` finds
them (--url or TG_HOST/TG_PORT; TG_API_TOKEN or the `api_token` file beside --db).

`follow` is shared with `tg run` when a `tg up` already serves the file: it polls the run until
it ends while a thread reads the `progress` events of `/api/events?job=` (rows and pages so
far) for the live progress line (`Progress`, on stderr, only on a terminal).

Exit codes: 0 ok, 1 the run failed (or was cancelled), 2 usage (no token), 3 not found (no such
job or run) or no system answering.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

from tg_actors.cli.sql import FAILED, NOT_FOUND, OK, Failure, api_client, api_message, exit_code
from tg_actors.runstate import TERMINAL, RunState
from tg_actors.settings import Settings

POLL_S = 0.5  # how often a followed run (and its logs) is read again
CONNECT_S = 5.0  # how long the event stream may take to say `: connected` before a trigger
WAIT_S = 24 * 3600.0  # how long a waiting command follows its run at most
_TERMINAL = frozenset(str(state) for state in TERMINAL)


def settings_for(db_path: str | None) -> Settings:
    flags: dict[str, Any] = {"db_path": db_path} if db_path else {}
    return Settings(**flags)


def _say(code: int, message: str) -> int:
    print(message, file=sys.stderr if code else sys.stdout)
    return code


def _api_failure(exc: Any, url: str, what: str) -> int:
    """An ApiError as an exit code and a message: 404 says what was not found."""
    if exc.status == 404:
        return _say(NOT_FOUND, f"{what} ({exc.detail}; the system at {url})")
    if exc.status == 0:
        return _say(NOT_FOUND, f"{exc.detail}: start the system with `tg up` (or give its --url)")
    return _say(exit_code(exc.status), api_message(exc, url))


def print_json(value: Any) -> None:
    """One JSON document on stdout (datetimes as ISO text)."""
    print(json.dumps(value, indent=2, default=_jsonable))


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # not a terminal (a pipe, a file): wide enough that run ids and times stay on one line
    return Console(stderr=stderr, width=None if stream.isatty() else 200, highlight=False)


def schedule_text(schedule: Any) -> str:
    """A job's schedule in a few words: `cron 0 * * * *`, `every 10m`, `after a, b`, `-`."""
    if not schedule:
        return "-"
    if not isinstance(schedule, dict):
        return str(schedule)
    if schedule.get("cron"):
        return f"cron {schedule['cron']}"
    if schedule.get("interval"):
        return f"every {schedule['interval']}"
    if schedule.get("after"):
        after = schedule["after"]
        return "after " + (", ".join(after) if isinstance(after, list) else str(after))
    return ", ".join(f"{k}={v}" for k, v in schedule.items() if v is not None) or "-"


# --- tg jobs / tg runs -----------------------------------------------------------------------


def cmd_jobs(url: str | None, db_path: str | None, as_json: bool) -> int:
    from rich.table import Table

    from tg_actors.client import ApiError

    try:
        with api_client(settings_for(db_path), url) as client:
            try:
                jobs = client.jobs()
            except ApiError as exc:
                return _api_failure(exc, client.url, "no jobs")
    except Failure as exc:
        return _say(exc.code, str(exc))
    if as_json:
        print_json(jobs)
        return OK
    grid = Table(header_style="bold")
    for column in ("job", "runs on", "paused", "last run", "next run"):
        grid.add_column(column, overflow="fold")
    for job in jobs:
        last = job.get("last_run") or {}
        grid.add_row(
            job["name"],
            schedule_text(job.get("schedule")),
            "yes" if job.get("paused") else "no",
            f"{last['state']} {last.get('finished_at') or last.get('started_at') or ''}".strip()
            if last
            else "-",
            job.get("next_run_at") or "-",
        )
    console = _console()
    console.print(grid)
    console.print(f"{len(jobs)} job(s)")
    return OK


def cmd_runs(
    url: str | None,
    db_path: str | None,
    job: str | None,
    state: str | None,
    limit: int,
    as_json: bool,
) -> int:
    from rich.table import Table

    from tg_actors.client import ApiError

    try:
        with api_client(settings_for(db_path), url) as client:
            try:
                runs = client.runs(job=job, state=state, limit=limit)
            except ApiError as exc:
                return _api_failure(exc, client.url, f"no job named {job!r}")
    except Failure as exc:
        return _say(exc.code, str(exc))
    if as_json:
        print_json(runs)
        return OK
    grid = Table(header_style="bold")
    for column in ("run", "job", "state", "trigger", "started", "rows", "pages", "error"):
        grid.add_column(
            column, overflow="fold", justify="right" if column in ("rows", "pages") else "left"
        )
    for run in runs:
        grid.add_row(
            run["run_id"],
            run["job"],
            run["state"],
            str(run.get("trigger") or ""),
            run.get("started_at") or "-",
            str(run.get("rows_loaded") or 0),
            str(run.get("pages") or 0),
            (run.get("error") or "")[:80],
        )
    console = _console()
    console.print(grid)
    console.print(f"{len(runs)} run(s), newest first")
    return OK


# --- tg logs ----------------------------------------------------------------------------------


def log_line(entry: dict[str, Any]) -> str:
    return f"{entry.get('ts', '')} {str(entry.get('level', '')):<7} {entry.get('message', '')}"


def cmd_logs(url: str | None, db_path: str | None, run_id: str, follow: bool, as_json: bool) -> int:
    from tg_actors.client import ApiError

    try:
        with api_client(settings_for(db_path), url) as client:
            try:
                run = client.run(run_id)
                if as_json:
                    print_json(client.logs(run_id) if not follow else _logs_to_end(client, run))
                    return OK
                shown = 0
                while True:
                    ended = run.get("state") in _TERMINAL
                    entries = client.logs(run_id)  # read after the state: an ended run's last lines
                    for entry in entries[shown:]:
                        print(log_line(entry), flush=True)
                    shown = max(shown, len(entries))
                    if not follow or ended:
                        break
                    time.sleep(POLL_S)
                    run = client.run(run_id)
            except ApiError as exc:
                return _api_failure(exc, client.url, f"no run {run_id!r}")
    except Failure as exc:
        return _say(exc.code, str(exc))
    if follow:
        print(f"run {run_id} {run.get('state')}", file=sys.stderr)
    return OK


def _logs_to_end(client: Any, run: dict[str, Any]) -> list[dict[str, Any]]:
    while run.get("state") not in _TERMINAL:
        time.sleep(POLL_S)
        run = client.run(run["run_id"])
    answer: list[dict[str, Any]] = client.logs(run["run_id"])
    return answer


# --- progress ---------------------------------------------------------------------------------


class Progress:
    """Rows, pages, rows/s and elapsed of one run, as a live line on stderr when it is a
    terminal (rich), else one plain summary line at the end."""

    def __init__(self, job: str, stream: TextIO | None = None) -> None:
        self.job = job
        self.rows = 0
        self.pages = 0
        self.began = time.monotonic()
        self._stream = stream or sys.stderr
        self._status: Any = None

    def line(self) -> str:
        elapsed = time.monotonic() - self.began
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        return (
            f"{self.job}: {self.rows} rows, {self.pages} pages, {rate:.0f} rows/s, "
            f"{elapsed:.1f}s elapsed"
        )

    def __enter__(self) -> Progress:
        if self._stream.isatty():
            from rich.console import Console

            # the renderable is this object: each refresh of the spinner reads the line anew
            self._status = Console(file=self._stream).status(self)
            self._status.start()
        return self

    def __rich__(self) -> str:
        return self.line()

    def update(self, rows: int, pages: int) -> None:
        self.rows, self.pages = max(self.rows, rows), max(self.pages, pages)

    def __exit__(self, exc_type: object, *_exc: object) -> None:
        if self._status is not None:
            self._status.stop()
        if exc_type is None:  # the run ended: its last line stays (no line for an error)
            print(self.line(), file=self._stream, flush=True)


def local_progress(progress: Progress) -> Callable[[int, int, float], None]:
    """The on_progress(rows, pages, elapsed) callback of a run in this process."""

    def report(rows: int, pages: int, _elapsed: float) -> None:
        progress.update(rows, pages)

    return report


class _Events:
    """A thread reading `progress` events of one job's run from `/api/events?job=`."""

    def __init__(self, make_client: Callable[[], Any], job: str) -> None:
        self._client = make_client()
        self.job = job
        self.connected = threading.Event()
        self.seen: dict[str, tuple[int, int]] = {}  # run_id: (rows, pages), newest attempt
        self._attempt: dict[str, int] = {}
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> _Events:
        self._thread.start()
        self.connected.wait(CONNECT_S)
        return self

    def _read(self) -> None:
        try:
            for event, data in self._client.events(self.job):
                if event == "connected":
                    self.connected.set()
                elif event == "progress":
                    run_id, attempt = data["run_id"], int(data.get("attempt", 0))
                    if attempt >= self._attempt.get(run_id, 0):  # a new attempt starts over
                        self._attempt[run_id] = attempt
                        self.seen[run_id] = (int(data["rows"]), int(data["pages"]))
        except Exception:  # closed by stop(), or the stream failed: the line stays as it is
            self.connected.set()

    def stop(self) -> None:
        self._client.close()  # ends the stream the thread reads
        self._thread.join(timeout=5)


def follow(
    client: Any, make_client: Callable[[], Any], job: str, start: Callable[[], str]
) -> dict[str, Any]:
    """Open the job's event stream, queue the run with `start()` (its run id), then poll the
    run until it ends, the progress line fed from the stream; the run as it ended."""
    from tg_actors.client import RunTimeout

    events = _Events(make_client, job).start()
    try:
        run_id = start()
        with Progress(job) as progress:
            deadline = time.monotonic() + WAIT_S
            run = client.run(run_id)
            while run.get("state") not in _TERMINAL:
                if time.monotonic() > deadline:
                    raise RunTimeout(run, WAIT_S)
                if run_id in events.seen:
                    progress.update(*events.seen[run_id])
                time.sleep(POLL_S)
                run = client.run(run_id)
            progress.update(int(run.get("rows_loaded") or 0), int(run.get("pages") or 0))
    finally:
        events.stop()
    return run  # type: ignore[no-any-return]


def summary(run: dict[str, Any]) -> list[str]:
    """`tg run`'s summary of an ended run (a row of tg.runs, or the API's run)."""
    started, finished = _instant(run.get("started_at")), _instant(run.get("finished_at"))
    seconds = (finished - started).total_seconds() if started and finished else 0.0
    lines = [
        f"{run['job']}: {run['state']} — {run.get('rows_loaded') or 0} rows, "
        f"{run.get('pages') or 0} pages, {seconds:.2f}s (run {run['run_id']})"
    ]
    if run.get("error"):
        lines.append(f"error: {run['error']}")
    return lines


def _instant(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


# --- tg trigger -------------------------------------------------------------------------------


def cmd_trigger(url: str | None, db_path: str | None, job: str, wait: bool, as_json: bool) -> int:
    settings = settings_for(db_path)
    try:
        return remote_run(settings, url, job, wait=wait, as_json=as_json, what="triggered")
    except Failure as exc:
        return _say(exc.code, str(exc))


def remote_run(
    settings: Settings, url: str | None, job: str, *, wait: bool, as_json: bool, what: str
) -> int:
    """Trigger `job` on the running system and (wait) follow it: shared by `tg trigger` and
    `tg run` when a `tg up` serves the file. Raises Failure (no token)."""
    from tg_actors.client import ApiError, RunTimeout

    with api_client(settings, url) as client:
        try:
            if not wait:
                run = client.trigger(job, wait=False)
                if as_json:
                    print_json(run)
                else:
                    print(f"queued run {run['run_id']} of job {job}")
                return OK

            def start() -> str:
                run_id: str = client.trigger(job, wait=False)["run_id"]
                if not as_json:
                    print(f"{what} run {run_id} of job {job} on {client.url}", flush=True)
                return run_id

            run = follow(client, lambda: api_client(settings, url), job, start)
        except ApiError as exc:
            return _api_failure(exc, client.url, f"No job named {job!r}")
        except RunTimeout as exc:
            return _say(FAILED, str(exc))
    if as_json:
        print_json(run)
    else:
        print("\n".join(summary(run)))
    return OK if run.get("state") == RunState.SUCCEEDED else FAILED
