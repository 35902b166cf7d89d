"""`tg preview JOB|FILE [--pages N] [--records K] [--json] [--url URL] [--db PATH]`.

A test read: the job's source for up to N pages (default 3, at most 20), nothing written,
no Ray started. The read runs here, in this process (secrets from this shell's environment,
under TG_SECRET_ENV as for a run); what only the database knows (the `for_each.sql` rows,
the committed cursor, the existing table's columns) is read as `tg sql` reads: through a
running `tg up`'s API while it holds the file, else from the file opened read-only. With
--url the whole test read goes to that system instead (`POST /api/preview`). A job name not
found in the configs folder is looked up in the running system.

Exit codes: 0 the read worked (warnings may say more), 1 the job is invalid or the read
failed, 2 usage, 3 not found (no such job or file, no API answering).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from tg_actors.cli.sql import NOT_FOUND, USAGE, Failure, api_client, api_message, exit_code
from tg_actors.errors import JobValidationError, QueryFailed
from tg_actors.jobs import JobSpec
from tg_actors.settings import Settings

OK, FAILED = 0, 1
SAMPLE_CHARS = 160  # of each sample row, on one line


def cmd_preview(args: argparse.Namespace) -> int:
    if not 1 <= args.pages <= 20 or not 1 <= args.records <= 100:
        return _say(USAGE, "--pages is 1 to 20, --records 1 to 100")
    flags = {k: getattr(args, k) for k in ("configs", "db_path") if getattr(args, k)}
    settings = Settings(**flags)
    try:
        answer = _answer(settings, args)
    except JobValidationError as exc:
        return _say(FAILED, str(exc))
    except Failure as exc:
        return _say(exc.code, str(exc))
    if args.json:
        print(json.dumps(answer, indent=2, default=str))
    else:
        print(render(answer))
    return FAILED if answer.get("error") else OK


def _answer(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.job)
    is_file = path.suffix in (".yaml", ".yml") or path.is_file()
    if is_file and not path.is_file():
        raise Failure(NOT_FOUND, f"{path}: no such file")
    if args.url:
        body = path.read_text(encoding="utf-8") if is_file else args.job
        return _remote(settings, args.url, body, args.pages, args.records)
    spec = _load(path) if is_file else _named(settings, args.job)
    if spec is None:  # not in the configs folder: the running system may know it
        if not _api_answers(settings):
            raise Failure(
                NOT_FOUND, f"no job {args.job!r} in {settings.jobs_dir} and no `tg up` answers"
            )
        return _remote(settings, None, args.job, args.pages, args.records)
    return asyncio.run(_local(settings, spec, args.pages, args.records))


def _load(path: Path) -> JobSpec:
    from tg_actors.config.files import load_job_file

    return load_job_file(path)


def _named(settings: Settings, name: str) -> JobSpec | None:
    from tg_actors.config.files import load_jobs

    if not settings.jobs_dir.is_dir():
        return None
    report = load_jobs([settings.jobs_dir])
    found = report.jobs.get(name)
    if found is None:
        for error in report.errors:  # the job may be the file that does not validate
            if Path(error.source).stem == name:
                raise error
        return None
    return found[1]


def _remote(
    settings: Settings, url: str | None, job: str, pages: int, records: int
) -> dict[str, Any]:
    from tg_actors.client import ApiError

    with api_client(settings, url) as client:
        try:
            answer: dict[str, Any] = client.preview(job, pages, records)
        except ApiError as exc:
            raise Failure(exit_code(exc.status), api_message(exc, client.url)) from exc
    return answer


async def _local(settings: Settings, spec: JobSpec, pages: int, records: int) -> dict[str, Any]:
    from serve.preview import test_read
    from tg_actors.cli.run_once import serve_demo_if_free

    demo = None
    if spec.source.url.startswith(f"http://{settings.host}:{settings.port}/demo/"):
        demo = serve_demo_if_free(settings)  # the shipped jobs read the demo source
    try:
        return await test_read(spec, _lookup(settings), pages=pages, records=records)
    finally:
        if demo is not None:
            demo.stop()


def _lookup(settings: Settings) -> Any:
    """serve.preview's `Sql` over `tg sql`'s read path (the API, or the file read-only);
    None for every lookup when there is no database at all."""
    from tg_actors.cli.sql import query

    state: dict[str, bool] = {}

    async def sql(statement: str, params: list[Any]) -> list[dict[str, Any]] | None:
        if state.get("absent"):
            return None
        try:
            table = await asyncio.to_thread(query, settings, None, statement, params, 1000)
        except Failure as exc:
            if exc.code == NOT_FOUND and "no DuckDB file" in str(exc):
                state["absent"] = True
                return None
            raise QueryFailed(str(exc)) from None
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows

    return sql


def _api_answers(settings: Settings) -> bool:
    from tg_actors.cli.sql import _api_answers as answers

    return answers(settings)


def render(answer: dict[str, Any]) -> str:
    """The answer for a terminal: the summary, requests, columns, sample, warnings."""
    stop = answer.get("stop") or {}
    lines = [
        f"{answer['job']}: {answer['pages_read']} pages, {answer['records']} records in"
        f" {answer.get('elapsed_ms', 0):.0f} ms; stopped: {stop.get('reason')}"
        f" ({stop.get('detail')})"
    ]
    if answer.get("chain"):
        lines.append(f"read: {json.dumps(answer['chain'], default=str)}")
    if answer.get("next_request"):
        nxt = answer["next_request"]
        lines.append(f"next request: {nxt['method']} {nxt['url']}")
    if answer.get("cursor"):
        cursor = answer["cursor"]
        lines.append(
            f"incremental: sent {cursor['param']}={cursor['sent']}, newest seen {cursor['newest']}"
        )
    lines += ["", "requests:"]
    for i, r in enumerate(answer["requests"], 1):
        records = "" if r.get("records") is None else f" {r['records']} records"
        lines.append(
            f"  {i:>2} {r['kind']:<4} {r['method']:<4} {r['status'] or r.get('error')}"
            f" {r['elapsed_ms']:>7.1f} ms {r['bytes']:>9} B{records}  {r['url']}"
        )
        if r.get("excerpt"):
            lines.append(f"       body: {r['excerpt'][:SAMPLE_CHARS]}")
    exists = answer.get("table_exists")
    where = {True: "exists", False: "is new", None: "unknown: no database"}[exists]
    lines += ["", f"columns (table {answer['table']} {where}):"]
    width = max((len(c["name"]) for c in answer["columns"]), default=0)
    for c in answer["columns"]:
        change = f"  {c['change']}" if c.get("change") else ""
        lines.append(f"  {c['name']:<{width}}  {c['type']}{change}")
    sample = answer["sample"]["transformed"] or answer["sample"]["raw"]
    lines += ["", f"sample ({len(sample)} of {answer['records']}):"]
    for row in sample:
        text = json.dumps(row, default=str)
        lines.append(
            "  " + (text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 3] + "...")
        )
    if answer["warnings"]:
        lines += ["", "warnings:", *(f"  - {w}" for w in answer["warnings"])]
    if answer.get("error"):
        lines += ["", f"error: {answer['error']}"]
    return "\n".join(lines)


def _say(code: int, message: str) -> int:
    print(message, file=sys.stderr)
    return code
