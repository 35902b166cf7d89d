"""A test read of a job, free of Ray: its source for a few pages, recorded, nothing written.

What a user needs to get a job right before saving it (the Connector Builder's "test read"):
every HTTP exchange (token requests too) with secrets masked, the records each page gave, a
sample before and after `transform`, the DuckDB types they would land as, and why pagination
stopped, or the request a full read would send next. A `for_each` job reads its first row, a
`window` job its first window. Pages are read one at a time (`concurrency` 1) under the job's
own `rate_limit`, so the exchanges are exactly the pages (and their retries).

The caller supplies what only the database knows (`Known`: the first `for_each.sql` row, the
committed cursor); comparing the columns with an existing table is the caller's too (the
store's schema evolution decides that). A failing source is an answer, not an exception:
`error` is set and whatever was read until then is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import duckdb
import httpx
import orjson
import pyarrow as pa

from tg_actors.chains import fill_source, row_values, slices, window_values
from tg_actors.engine.sync import batch_cursor, incremental_params, transformed
from tg_actors.errors import PaginationLoop, TGError
from tg_actors.incremental import newest
from tg_actors.jobs import HttpSource, JobSpec
from tg_actors.records import compile_path, extract_value
from tg_actors.redaction import sanitize_headers
from tg_actors.sources.batches import records_to_arrow, with_columns
from tg_actors.sources.http import HttpSourceClient, Page, tls_context
from tg_actors.sources.requester import Redactor
from tg_actors.sources.requestspec import RequestSpec, full_url

MAX_PAGES = 20  # a test read is a few pages, not a run
TIME_LIMIT = 25.0  # seconds: a test read answers within an HTTP request's patience
# a test read fails fast: fewer tries and shorter waits than a run may take
_QUICK = {"max_tries": 2, "backoff": timedelta(seconds=0.5), "max_backoff": timedelta(seconds=2)}
DEFAULT_PAGES = 3
MAX_SAMPLE = 100
DEFAULT_SAMPLE = 5
EXCERPT_CHARS = 500
_HEAD_BYTES = 8 * 1024  # of each body, kept for its excerpt
_KEEP_BYTES = 8 * 1024 * 1024  # the first pages' bodies are kept whole up to this, for checks


@dataclass(frozen=True)
class Known:
    """What the database knows of the job: the `for_each.sql` rows (None: no database to ask,
    or no SQL), the committed incremental cursor."""

    rows: list[dict[str, Any]] | None = None
    cursor: str | None = None


@dataclass
class _Exchange:
    method: str
    url: str
    headers: list[tuple[str, str]]
    started: float
    status: int = 0
    elapsed_ms: float = 0.0
    size: int = 0
    content_type: str | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    head: bytes = b""
    digest: str = ""
    body: bytes | None = None  # whole, for the first pages' checks
    error: str | None = None
    records: int | None = None  # set once matched to its page
    auth: bool = False


class RecordingTransport(httpx.AsyncBaseTransport):
    """Every request the source sends and what came back, in order (bodies read here)."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport(verify=tls_context())
        self.exchanges: list[_Exchange] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        seen = _Exchange(
            request.method, str(request.url), list(request.headers.items()), time.perf_counter()
        )
        self.exchanges.append(seen)
        try:
            response = await self._inner.handle_async_request(request)
            content = await response.aread()
        except Exception as exc:
            seen.error = f"{type(exc).__name__}: {exc}"
            seen.elapsed_ms = (time.perf_counter() - seen.started) * 1000
            raise
        seen.elapsed_ms = (time.perf_counter() - seen.started) * 1000
        seen.status, seen.size = response.status_code, len(content)
        seen.content_type = response.headers.get("content-type")
        seen.response_headers = list(response.headers.items())
        seen.head = content[:_HEAD_BYTES]
        seen.digest = hashlib.blake2b(content, digest_size=16).hexdigest()
        if len(self.exchanges) <= 4 and len(content) <= _KEEP_BYTES:
            seen.body = content
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class _Read:
    """What the read gathered, page by page."""

    pages: list[Page] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    tables: list[pa.Table] = field(default_factory=list)
    cursor: str | None = None
    warnings: list[str] = field(default_factory=list)


async def preview_job(
    spec: JobSpec,
    *,
    pages: int = DEFAULT_PAGES,
    records: int = DEFAULT_SAMPLE,
    known: Known | None = None,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    now: datetime | None = None,
    time_limit: float = TIME_LIMIT,
) -> dict[str, Any]:
    """The test read's answer (JSON-ready; README "Test a job before saving it"). It stops
    after `time_limit` seconds with what it read by then (stop reason `time_limit`)."""
    started = time.perf_counter()
    pages = max(1, min(pages, MAX_PAGES))
    records = max(1, min(records, MAX_SAMPLE))
    known = known or Known()
    answer: dict[str, Any] = {
        "job": spec.name,
        "table": spec.destination.table,
        "pages_read": 0,
        "records": 0,
        "requests": [],
        "pages": [],
        "sample": {"raw": [], "transformed": []},
        "columns": [],
        "table_exists": None,
        "next_request": None,
        "stop": None,
        "chain": None,
        "cursor": None,
        "expect_total": None,
        "warnings": [],
        "error": None,
    }
    read = _Read()
    try:
        source, chain = _first_chain(spec, known, now or datetime.now(UTC), read.warnings)
    except (TGError, ValueError) as exc:  # a for_each row that does not fill the source
        answer["error"] = str(exc)
        answer["stop"] = _stop("error", str(exc))
        return _finish(answer, read, spec, records, started)
    answer["chain"] = chain
    if source is None:  # for_each with no rows: nothing to read
        answer["stop"] = _stop("no_rows", "for_each gives no rows: a run would read nothing")
        return _finish(answer, read, spec, records, started)
    quick = {k: min(v, getattr(source, k)) for k, v in _QUICK.items()}
    timeout = min(source.timeout, timedelta(seconds=time_limit))
    # one page at a time: exactly the pages asked for
    source = source.model_copy(update={"concurrency": 1, "timeout": timeout, **quick})
    params = incremental_params(spec, known.cursor)
    recorder = RecordingTransport(transport)
    # expect_total is checked here, over every page read (the client's own check would
    # raise before yielding the last page)
    client = HttpSourceClient(
        source, env=env, transport=recorder, extra_params=params, full_read=False
    )
    include = _include(spec, chain)
    last: Page | None = None
    try:
        async with asyncio.timeout(time_limit), contextlib.aclosing(client.pages()) as stream:
            async for page in stream:
                last = page
                _take(spec, read, page, include)
                if len(read.pages) >= pages:
                    break
        if last is not None and last.checkpoint is not None:
            answer["stop"] = _stop(
                "page_limit", f"the preview's limit of {pages} pages; a full read goes on"
            )
            answer["next_request"] = _next_request(source, last.checkpoint, client.redactor)
        else:
            reason, detail = client.stopped or ("single_request", "no pagination: one request")
            answer["stop"] = _stop(reason, detail)
    except PaginationLoop as exc:
        answer["stop"] = _stop("loop_guard", str(exc))
        if "as page 1" in str(exc):
            read.warnings.append(
                "pages 1 and 2 hold the same records: does the API ignore the paging parameter?"
            )
    except TimeoutError:
        detail = f"the preview's time limit of {time_limit:g} s"
        answer["stop"] = _stop("time_limit", detail)
        read.warnings.append(f"stopped after {time_limit:g} s (slow API or a low rate_limit?)")
    except Exception as exc:  # a test read answers, whatever went wrong
        text = (
            str(exc)
            if isinstance(exc, TGError | httpx.HTTPError)
            else f"{type(exc).__name__}: {exc}"
        )
        message = client.redactor.text(text)
        answer["error"] = message
        # pagination ended and the end's check failed (expect_total): the stop is the end's
        answer["stop"] = _stop(*client.stopped) if client.stopped else _stop("error", message)
        if "records path" in message and "not found" in message:
            read.warnings.append(f"the records path {spec.source.records!r} matched nothing")
    answer["requests"] = _requests(recorder.exchanges, read, source, client.redactor, answer)
    if incremental := spec.source.incremental:
        sent = params.get(incremental.param)
        answer["cursor"] = {"param": incremental.param, "sent": sent, "newest": read.cursor}
    # as a run checks it: on a full read only (no incremental filter, no window)
    full_read = not params and spec.source.window is None
    _checks(answer, recorder.exchanges, read, source, full_read)
    return _finish(answer, read, spec, records, started)


def _stop(reason: str, detail: str) -> dict[str, str]:
    return {"reason": reason, "detail": detail}


def _first_chain(
    spec: JobSpec, known: Known, now: datetime, warnings: list[str]
) -> tuple[HttpSource | None, dict[str, Any] | None]:
    """The source of the job's first chain (its first for_each row, its first window), and
    what that chain is; (None, ...) when for_each gives no rows."""
    source = spec.source
    if source.for_each is None and source.window is None:
        return source, None
    values: dict[str, Any] = {}
    chain: dict[str, Any] = {"row": None, "window": None}
    if source.for_each is not None:
        rows = source.for_each.values if source.for_each.values is not None else known.rows
        if rows is None:
            warnings.append("no database to run for_each.sql against: nothing to read")
            return None, chain
        if not rows:
            warnings.append("for_each.sql returned no rows: a run would read nothing")
            return None, chain
        values = row_values(rows[0], f"job {spec.name}: for_each row")
        chain["row"] = values
        if len(rows) > 1 or source.for_each.values is None:
            warnings.append("for_each: the preview reads the first row only")
    if source.window is not None:
        window = source.window
        until = window.end if isinstance(window.end, datetime) else now
        first = next(iter(slices(window.start, until, window.step)), None)
        if first is None:
            warnings.append("window: no window between its start and end: nothing to read")
            return None, chain
        values |= window_values(first, window.format.value)
        chain["window"] = {"start": first.start.isoformat(), "end": first.end.isoformat()}
        warnings.append("window: the preview reads the first window only")
    stored = source.model_dump(mode="json", by_alias=True)
    return HttpSource.model_validate(fill_source(stored, values)), chain


def _include(spec: JobSpec, chain: dict[str, Any] | None) -> dict[str, Any]:
    for_each = spec.source.for_each
    if for_each is None or chain is None or chain.get("row") is None:
        return {}
    return {name: chain["row"][name] for name in for_each.include if name in chain["row"]}


def _take(spec: JobSpec, read: _Read, page: Page, include: Mapping[str, Any]) -> None:
    """One page: its records into the sample and the tables to type (as the engine does)."""
    read.pages.append(page)
    rows = page.table.to_pylist() if page.table is not None else page.records
    read.raw.extend(rows[: max(0, MAX_SAMPLE - len(read.raw))])
    table = page.table if page.table is not None else records_to_arrow(page.records)
    if not table.num_rows:
        return
    if incremental := spec.source.incremental:
        try:
            read.cursor = newest(read.cursor, batch_cursor(table, incremental.cursor_field))
        except TGError as exc:
            read.warnings.append(str(exc))
    table = with_columns(table, include)
    read.tables.append(table)


def _next_request(
    source: HttpSource, checkpoint: Mapping[str, Any], redactor: Redactor
) -> dict[str, Any]:
    """The request after the last page read, from its checkpoint (which holds `${NAME}`
    references, never secret values), masked as a logged URL is."""
    saved = checkpoint["request"]
    request = RequestSpec(saved["url"], dict(saved["params"]), {}, saved.get("json"))
    answer: dict[str, Any] = {"method": source.method, "url": redactor.url(full_url(request))}
    if request.json is not None:
        answer["body"] = orjson.loads(redactor.text(orjson.dumps(request.json).decode()))
    return answer


def _requests(
    exchanges: list[_Exchange],
    read: _Read,
    source: HttpSource,
    redactor: Redactor,
    answer: dict[str, Any],
) -> list[dict[str, Any]]:
    """The exchanges as the answer shows them: masked; each page's records on the exchange
    that gave it; a body excerpt where the body is what the user must look at."""
    auth_urls = {_place(url) for url in _auth_urls(source)}
    for exchange in exchanges:
        exchange.auth = _place(exchange.url) in auth_urls
    queue = [e for e in exchanges if not e.auth]
    for page in read.pages:  # pages come in order, each after its own retries
        while queue:
            exchange = queue.pop(0)
            if redactor.url(exchange.url) == page.url or _place(exchange.url) == _place(page.url):
                if 200 <= exchange.status < 300 or page.skipped:
                    exchange.records = _count(page)
                    break
    shown = []
    for i, exchange in enumerate(exchanges):
        failed = answer["error"] is not None and i == len(exchanges) - 1
        json_expected = source.format == "json" and not exchange.auth
        not_json = json_expected and "json" not in (exchange.content_type or "")
        look = exchange.status >= 300 or not exchange.records or failed or not_json
        excerpt = None
        if look and exchange.head:
            text = " ".join(exchange.head.decode("utf-8", errors="replace").split())
            excerpt = redactor.text(text)[:EXCERPT_CHARS]
        shown.append(
            {
                "kind": "auth" if exchange.auth else "page",
                "method": exchange.method,
                "url": redactor.url(exchange.url),
                "headers": sanitize_headers(exchange.headers, redactor.secrets),
                "status": exchange.status or None,
                "elapsed_ms": round(exchange.elapsed_ms, 1),
                "bytes": exchange.size,
                "content_type": exchange.content_type,
                "records": exchange.records,
                "excerpt": excerpt,
                "error": redactor.text(exchange.error) if exchange.error else None,
            }
        )
    return shown


def _auth_urls(source: HttpSource) -> list[str]:
    auth = source.auth
    return [u for u in (getattr(auth, "token_url", None), getattr(auth, "url", None)) if u]


def _place(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path


def _checks(
    answer: dict[str, Any],
    exchanges: list[_Exchange],
    read: _Read,
    source: HttpSource,
    full_read: bool,
) -> None:
    """The warnings a user needs: records path, repeated pages, expect_total."""
    pages = [e for e in exchanges if e.records is not None]
    bodies = [_json(e.body) for e in pages[:2]]
    if source.format == "json" and bodies and bodies[0] is not None and source.records != "$":
        found = compile_path(source.records).find(bodies[0])
        values = [match.value for match in found]
        if len(values) == 1 and isinstance(values[0], dict):
            read.warnings.append(
                f"the records path {source.records!r} holds one object, not a list: each page"
                " is read as one record"
            )
    if len(pages) >= 2 and pages[0].digest == pages[1].digest and pages[0].records:
        warning = "pages 1 and 2 are identical: does the API ignore the paging parameter?"
        if not any("pages 1 and 2" in w for w in read.warnings):
            read.warnings.append(warning)
    expect = source.expect_total
    if expect is None or not pages or not full_read:
        return
    if isinstance(expect, str):
        raw = extract_value(bodies[0], expect) if bodies else None
        where = f"path {expect!r}"
    else:
        raw = {k.lower(): v for k, v in pages[0].response_headers}.get(expect.header.lower())
        where = f"header {expect.header}"
    try:
        reported = int(str(raw).strip()) if raw not in (None, "") else None
    except ValueError:
        reported = None
    read_so_far = sum(_count(p) for p in read.pages)
    complete = answer["stop"] is not None and answer["stop"]["reason"] not in (
        "page_limit",
        "error",
    )
    answer["expect_total"] = {"reported": reported, "read": read_so_far, "complete": complete}
    if reported is None:
        read.warnings.append(f"expect_total: the first page has no number at {where}")
    elif complete and reported != read_so_far:
        read.warnings.append(
            f"expect_total: the server reports {reported} records and the whole read gave"
            f" {read_so_far}: a run would fail"
        )
    elif not complete and read.pages:
        per_page = max(1, read_so_far // len(read.pages))
        read.warnings.append(
            f"expect_total: the server reports {reported} records; at {per_page} a page a full"
            f" read takes about {-(-reported // per_page)} pages"
        )


def _count(page: Page) -> int:
    return page.table.num_rows if page.table is not None else len(page.records)


def _json(body: bytes | None) -> Any:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _finish(
    answer: dict[str, Any], read: _Read, spec: JobSpec, records: int, started: float
) -> dict[str, Any]:
    answer["pages_read"] = len(read.pages)
    answer["pages"] = [
        {"number": p.number, "url": p.url, "records": _count(p), "bytes": p.bytes}
        for p in read.pages
    ]
    answer["records"] = sum(page["records"] for page in answer["pages"])
    answer["sample"]["raw"] = _jsonable(read.raw[:records])
    if read.tables:
        try:
            table = pa.concat_tables(
                [transformed(spec, t) for t in read.tables], promote_options="permissive"
            )
        except TGError as exc:
            answer["error"] = answer["error"] or str(exc)
            read.warnings.append(f"transform: {exc}")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            read.warnings.append(f"the pages' columns do not unify in one batch: {exc}")
        else:
            answer["sample"]["transformed"] = _jsonable(table.slice(0, records).to_pylist())
            answer["columns"] = duckdb_columns(table)
            if answer["records"] and not table.num_rows:
                read.warnings.append("transform: the records gave no rows")
    answer["warnings"] = read.warnings
    answer["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return answer


def duckdb_columns(table: pa.Table) -> list[dict[str, Any]]:
    """The DuckDB types `table`'s columns land as (as the Database reads an Arrow batch)."""
    if not table.num_columns:
        return []
    con = duckdb.connect(":memory:")
    try:
        relation = con.from_arrow(table)
        return [
            {"name": name, "type": str(kind), "change": None}
            for name, kind in zip(relation.columns, relation.types, strict=True)
        ]
    finally:
        con.close()


def _jsonable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    data = orjson.dumps(rows, default=str, option=orjson.OPT_NON_STR_KEYS)
    return list(orjson.loads(data))
