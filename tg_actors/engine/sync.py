"""One sync attempt, free of Ray: pages from the source -> Arrow -> transform -> stage.

The caller supplies `stage` (the engine sends each batch with its checkpoint to the Database
actor) and commits at the end; nothing here touches the target table, so an attempt that
fails leaves it as it was. Pages are gathered into batches (`Batch`); staging a batch
overlaps fetching the next pages, and stages stay in order, so a checkpoint always means
"every page up to here is staged".

A checkpoint is `{"source": <HttpSourceClient page checkpoint or None>, "cursor": <max
incremental cursor seen so far>}`; a retried run passes the last one back as `resume`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from tg_actors.attempts import Resume
from tg_actors.errors import SourceError, TGError, TransformError
from tg_actors.incremental import as_text, newest, request_value
from tg_actors.jobs import JobSpec
from tg_actors.sources.batches import records_to_arrow
from tg_actors.sources.http import HttpSourceClient, tls_context
from tg_actors.sources.requester import TokenCache
from tg_actors.transform import apply_transform

# stage(rows of one or more pages, checkpoint after them or None, pages fetched so far)
Stage = Callable[[pa.Table, dict[str, Any] | None, int], Awaitable[object]]
Progress = Callable[[int, int], Awaitable[object]]
Acquire = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class SyncResult:
    rows: int
    pages: int
    seconds: float
    cursor: str | None = None  # the new incremental cursor to commit with the rows
    # the rows, when the run fitted in one batch and nothing was staged (`keep_tail`): they go
    # with the commit itself, saving the staging round trip
    tail: pa.Table | None = None
    # for_each and window jobs: per-chain cursors and window positions (engine/fanout.py)
    positions: dict[str, dict[str, Any]] | None = None
    skipped: tuple[str, ...] = ()  # URLs (secrets masked) of responses a `skip` rule dropped


class ResponseCodes(httpx.AsyncBaseTransport):
    """`inner` (or, without one, a transport of httpx's own per client) counting the HTTP
    responses it hands back by status code: one per attempt, the engine sends `codes` with
    the attempt's RunFinished or RunFailed (`tg_source_requests_total{tg_job,code}`). Wrapping
    the transport, not the client, counts every request of every chain of a fanned-out run,
    each retry and redirect hop, and oauth2 token requests."""

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._given = inner
        self._own: httpx.AsyncBaseTransport | None = None  # made per client when none is given
        self.codes: dict[str, int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        inner = self._given
        if inner is None:
            if self._own is None:
                self._own = httpx.AsyncHTTPTransport(verify=tls_context())
            inner = self._own
        response = await inner.handle_async_request(request)
        code = str(response.status_code)
        self.codes[code] = self.codes.get(code, 0) + 1
        return response

    async def aclose(self) -> None:
        """Each client closing closes what it would have without us: the given transport
        (a SharedTransport keeps its pool), or our own, made afresh for the next client."""
        if self._given is not None:
            await self._given.aclose()
        elif self._own is not None:
            own, self._own = self._own, None
            await own.aclose()


def batch_cursor(table: pa.Table, field: str) -> str | None:
    """The largest `field` value in a raw batch, as cursor text, in THE cursor order
    (`incremental.cursor_order`: numbers exactly, instants as instants, else text)."""
    if field not in table.column_names:
        raise SourceError(f"incremental cursor_field {field!r} is not in the records")
    column = pc.drop_null(table.column(field))
    if not len(column):
        return None
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        # fast path: a column Arrow casts to instants as a whole holds only ISO instants (its
        # formats are a subset of fromisoformat's, none all digits), so its maximum is the
        # order's; anything else (numeric text, mixed offsets and naive, text) goes value by
        # value through the one order
        for target in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
            try:
                return as_text(pc.max(pc.cast(column, target)).as_py())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        return newest(*pc.unique(column).to_pylist())
    try:
        top = pc.max(column).as_py()  # one typed kind: Arrow's order is the cursor order
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise SourceError(
            f"incremental cursor_field {field!r} holds {column.type} values, not a number,"
            " a timestamp or text"
        ) from None
    return newest(as_text(top))


def transformed(spec: JobSpec, table: pa.Table) -> pa.Table:
    if spec.transform is None:
        return table
    try:
        return apply_transform(table, spec.transform.sql)
    except TransformError as exc:
        raise TransformError(
            f"job {spec.name}: transform failed: {exc}\nSQL: {spec.transform.sql}"
        ) from None


def _our_error(exc: Exception) -> Exception:
    """The error `stage` raised on the far side, when its transport wrapped it (Ray's
    RayTaskError keeps it as `.cause`): a run's error then reads as what went wrong (say, a
    column whose type changed), not as a remote traceback."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, TGError) else exc


def incremental_params(spec: JobSpec, cursor: str | None) -> dict[str, str]:
    incremental = spec.source.incremental
    if incremental is None:
        return {}
    value = request_value(cursor, incremental.initial, incremental.lookback)
    return {} if value is None else {incremental.param: value}


class Stager:
    """Turns pages into staged batches, in order, one stage call in flight at a time."""

    def __init__(self, spec: JobSpec, stage: Stage, rows: int, pages: int, cursor: str | None):
        self.spec, self._stage = spec, stage
        self.rows, self.pages, self.cursor = rows, pages, cursor
        self._batch = Batch(spec.source.checkpoint_rows)
        self._pending: asyncio.Future[object] | None = None
        self.staged = False
        self.skipped: list[str] = []  # URLs of responses a `skip` rule dropped

    def add(
        self,
        records: list[dict[str, Any]],
        source_checkpoint: dict[str, Any] | None = None,
        table: pa.Table | None = None,
    ) -> None:
        """One page's records; `source_checkpoint` is the page's own (`Page.checkpoint`): where
        a resumed attempt continues when this page is the last one staged. `table`: the page's
        rows already in Arrow (`Page.table`, a jsonl/csv source), taken instead of `records`."""
        self.pages += 1
        if table is None:
            if not records:
                return
            table = records_to_arrow(records)
        elif not table.num_rows:
            return
        incremental = self.spec.source.incremental
        if incremental is not None:
            self.cursor = newest(self.cursor, batch_cursor(table, incremental.cursor_field))
        table = transformed(self.spec, table)
        if table.num_rows:
            mark = None
            if source_checkpoint is not None:
                mark = Mark({"source": source_checkpoint, "cursor": self.cursor}, self.pages)
            self._batch.add(table, mark)
            self.rows += table.num_rows

    async def flush(self, source_checkpoint: dict[str, Any] | None, force: bool = False) -> None:
        if not (force or self._batch.full()):
            return
        here = Mark(self._here(source_checkpoint), self.pages)
        parts = self._batch.take()
        for i, (table, mark) in enumerate(parts):
            await self.wait()  # stages stay in order: a checkpoint covers every page before it
            # pages whose schemas Arrow cannot unify are staged one by one (the store evolves
            # types across them), each with the checkpoint right after its own page: an
            # attempt cut off between two parts resumes after the last part that landed.
            # The last part carries where the run is now (empty pages after it included).
            at = here if i == len(parts) - 1 else mark
            checkpoint, pages = (None, self.pages) if at is None else (at.state(), at.pages)
            self.staged = True
            self._pending = asyncio.ensure_future(self._stage(table, checkpoint, pages))

    def _here(
        self, source_checkpoint: dict[str, Any] | None
    ) -> dict[str, Any] | Callable[[], dict[str, Any]]:
        """The checkpoint of where the run is now: after the pages added so far."""
        return {"source": source_checkpoint, "cursor": self.cursor}

    async def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                await pending
            except Exception as exc:
                ours = _our_error(exc)
                if ours is exc:
                    raise
                raise ours from None

    def take_tail(self) -> pa.Table | None:
        """The rows gathered so far as one table, when nothing was staged before them."""
        if self.staged:
            return None
        parts = self._batch.take()
        if len(parts) == 1:
            return parts[0][0]
        for part, mark in parts:  # several schemas that cannot be unified: they are staged
            self._batch.add(part, mark)
        return None

    def abandon(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()


async def extract_and_stage(
    spec: JobSpec,
    stage: Stage,
    progress: Progress | None = None,
    *,
    resume: Resume | None = None,
    cursor: str | None = None,
    acquire: Acquire | None = None,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    keep_tail: bool = False,
    params: Mapping[str, str] | None = None,
    tokens: TokenCache | None = None,
) -> SyncResult:
    """Read the pages of `spec.source` (from `resume` on), stage them; returns the totals.
    `cursor` is the job's committed incremental cursor (None on the first run); `params`,
    when given, are the incremental filter instead (a backfill's range). With `keep_tail`, a
    run that fits in one batch stages nothing: its rows come back as `tail`."""
    started = time.perf_counter()
    saved = dict(resume.checkpoint) if resume else {}
    stager = Stager(
        spec,
        stage,
        resume.rows if resume else 0,
        resume.pages if resume else 0,
        saved.get("cursor"),
    )
    if resume and saved.get("source") is None:  # every page was staged: only the commit is left
        return SyncResult(stager.rows, stager.pages, time.perf_counter() - started, stager.cursor)
    client = HttpSourceClient(
        spec.source,
        env=env,
        transport=transport,
        acquire=acquire,
        extra_params=incremental_params(spec, cursor) if params is None else params,
        tokens=tokens,
    )
    try:
        async for page in client.pages(resume=saved.get("source") if resume else None):
            if page.skipped:
                stager.skipped.append(page.url)
            stager.add(page.records, page.checkpoint, page.table)
            if page.checkpoint is not None:
                await stager.flush(page.checkpoint)
            if progress is not None:
                await progress(stager.rows, stager.pages)
        tail = stager.take_tail() if keep_tail else None
        if tail is None:
            await stager.flush(None, force=True)
        await stager.wait()
    except Exception:
        # the source failed: let the stage in flight land, so a retry resumes after it
        with contextlib.suppress(Exception):
            await stager.wait()
        raise
    finally:
        stager.abandon()  # cancelled (timeout, cancel): nothing more is staged
    seconds = time.perf_counter() - started
    skipped = tuple(stager.skipped)
    return SyncResult(stager.rows, stager.pages, seconds, stager.cursor, tail, skipped=skipped)


@dataclass(frozen=True)
class Mark:
    """Where a resumed attempt continues once the rows up to here are staged: the checkpoint
    (`{"source", "cursor"}`) and the pages fetched by then."""

    checkpoint: dict[str, Any] | Callable[[], dict[str, Any]]  # or made when it is staged
    pages: int

    def state(self) -> dict[str, Any]:
        return self.checkpoint() if callable(self.checkpoint) else self.checkpoint


class Batch:
    """Pages gathered into one staged batch: the Database actor's cost is mostly per call, so
    `rows` rows (`source.checkpoint_rows`, 50k), 32 MiB or 1 s of pages go at once; a resumed
    run re-fetches at most that much. Each page's table keeps the Mark right after it."""

    BYTES = 32 * 1024 * 1024
    SECONDS = 1.0

    def __init__(self, rows: int = 50_000) -> None:
        self.rows = rows
        self.parts: list[tuple[pa.Table, Mark | None]] = []
        self._rows = self._bytes = 0
        self._since = time.monotonic()

    def add(self, table: pa.Table, mark: Mark | None = None) -> None:
        if not self.parts:
            self._since = time.monotonic()
        self.parts.append((table, mark))
        self._rows += table.num_rows
        self._bytes += table.nbytes

    def full(self) -> bool:
        return bool(self.parts) and (
            self._rows >= self.rows
            or self._bytes >= self.BYTES
            or time.monotonic() - self._since >= self.SECONDS
        )

    def take(self) -> list[tuple[pa.Table, Mark | None]]:
        """The gathered pages as one table with the last page's Mark (several, each with its
        own Mark, when their schemas cannot be unified)."""
        parts, self.parts, self._rows, self._bytes = self.parts, [], 0, 0
        if len(parts) <= 1:
            return parts
        try:
            tables = [table for table, _ in parts]
            return [(pa.concat_tables(tables, promote_options="permissive"), parts[-1][1])]
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return parts  # staged one by one: the store evolves types across them
