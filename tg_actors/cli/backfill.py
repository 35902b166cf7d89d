"""`tg backfill JOB --from T1 --to T2` and `tg refresh JOB [--yes]`, on a running `tg up`
through its HTTP API (`POST /api/jobs/{name}/backfill` / `/refresh`, tg_actors.client), the
URL and token found as `tg sql` finds them (--url or TG_HOST/TG_PORT; TG_API_TOKEN or the
`api_token` file beside --db).

A backfill reads the range [T1, T2) and leaves the job's live cursor alone; a refresh re-reads
everything and replaces the table when it succeeds, so it asks first (on a terminal) unless
--yes. Prints the run id, then (unless --no-wait) the run's end state, rows and error.
Exit codes: 0 succeeded (or queued, with --no-wait), 1 the run failed or was cancelled, the
server refused (its message printed) or the refresh was not confirmed, 2 usage (a bad time,
no token, a refresh without a terminal and no --yes), 3 no such job or no system answering.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from tg_actors.chains import parse_instant
from tg_actors.cli.sql import FAILED, OK, USAGE, Failure, api_client, api_message, exit_code
from tg_actors.runstate import RunState, Trigger
from tg_actors.settings import Settings

WAIT_SECONDS = 24 * 3600.0  # how long a waiting command follows its run at most


def cmd_backfill(args: argparse.Namespace) -> int:
    try:
        start = _instant("--from", args.start)
        end = _instant("--to", args.end)
    except Failure as exc:
        return _say(exc.code, str(exc))
    return _queue(args, Trigger.BACKFILL, lambda c: c.backfill(args.job, start, end, wait=False))


def cmd_refresh(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            return _say(
                USAGE,
                f"tg refresh replaces the table of job {args.job}: pass --yes to confirm "
                "(no terminal to ask on)",
            )
        answer = input(f"Replace the table of job {args.job} with a full re-read? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return _say(FAILED, "not confirmed: nothing queued")
    return _queue(args, Trigger.REFRESH, lambda c: c.refresh(args.job, wait=False))


def _instant(flag: str, text: str) -> datetime:
    try:
        return parse_instant(text)
    except ValueError:
        raise Failure(
            USAGE, f"{flag} {text!r}: not an ISO 8601 date or datetime (e.g. 2024-05-01T00:00Z)"
        ) from None


def _queue(args: argparse.Namespace, what: str, call: Any) -> int:
    """Queue the run with `call(client)`, print its id, then (waiting) how it ended."""
    from tg_actors.client import ApiError, RunTimeout

    settings = Settings(**({"db_path": args.db_path} if args.db_path else {}))
    try:
        with api_client(settings, args.url) as client:
            try:
                run = call(client)
                run_id = run["run_id"]
                print(f"queued {what} run {run_id} of job {args.job}", flush=True)
                if args.no_wait:
                    return OK
                run = client.wait(run_id, timeout=WAIT_SECONDS)
            except ApiError as exc:
                return _say(exit_code(exc.status), _message(exc, client.url))
            except RunTimeout as exc:
                return _say(FAILED, str(exc))
    except Failure as exc:
        return _say(exc.code, str(exc))
    return _ended(run)


def _message(exc: Any, url: str) -> str:
    if exc.status == 0:
        return f"{exc.detail}: start the system with `tg up` (or give its --url)"
    return api_message(exc, url)


def _ended(run: dict[str, Any]) -> int:
    state = run.get("state")
    print(f"run {run.get('run_id')} {state}: {run.get('rows_loaded') or 0} rows")
    if run.get("error"):
        print(f"error: {run['error']}")
    return OK if state == RunState.SUCCEEDED else FAILED


def _say(code: int, message: str) -> int:
    print(message, file=sys.stderr if code else sys.stdout)
    return code
