"""One sync attempt, free of Ray: pages from the source -> Arrow -> transform -> stage.

The caller supplies `stage` (the engine sends each batch with its checkpoint to the Database
actor) and commits at the end; nothing here touches the target table, so an attempt that
fails leaves it as it was. Staging of page k overlaps fetching page k+1, and stages stay in
order, so a checkpoint always means "every page up to here is staged".

A checkpoint is `{"source": <HttpSourceClient page checkpoint or None>, "cursor": <max
incremental cursor seen so far>}`; a retried run passes the last one back as `resume`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from tg_actors.core.incremental import as_text, newest, request_value
from tg_actors.errors import SourceError, TransformError
from tg_actors.jobs import JobSpec
from tg_actors.sources.batches import apply_transform, records_to_arrow
from tg_actors.sources.http import HttpSourceClient

# stage(table or None for a page that kept no rows, checkpoint, pages so far)
Stage = Callable[[pa.Table | None, dict[str, Any], int], Awaitable[object]]
Progress = Callable[[int, int], Awaitable[object]]
Acquire = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class SyncResult:
    rows: int
    pages: int
    seconds: float
    cursor: str | None = None  # the new incremental cursor to commit with the rows


def batch_cursor(table: pa.Table, field: str) -> str | None:
    """The largest `field` value in a raw batch, as cursor text."""
    if field not in table.column_names:
        raise SourceError(f"incremental cursor_field {field!r} is not in the records")
    column = table.column(field)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        # ISO-8601 text compares as instants (mixed offsets), in Arrow, not row by row
        for target in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
            try:
                return as_text(pc.max(pc.cast(column, target)).as_py())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
    return as_text(pc.max(column).as_py())


def transformed(spec: JobSpec, table: pa.Table) -> pa.Table:
    if spec.transform is None:
        return table
    try:
        return apply_transform(table, spec.transform.sql)
    except TransformError as exc:
        raise TransformError(
            f"job {spec.name}: transform failed: {exc}\nSQL: {spec.transform.sql}"
        ) from None


async def extract_and_stage(
    spec: JobSpec,
    stage: Stage,
    progress: Progress | None = None,
    *,
    resume: Mapping[str, Any] | None = None,
    cursor: str | None = None,
    acquire: Acquire | None = None,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SyncResult:
    """Read the pages of `spec.source` (from `resume` on), stage each; returns the totals.
    `cursor` is the job's committed incremental cursor (None on the first run)."""
    started = time.perf_counter()
    rows = int(resume["rows"]) if resume else 0
    pages = int(resume["pages"]) if resume else 0
    saved = dict(resume["checkpoint"]) if resume else {}
    seen_cursor: str | None = saved.get("cursor")
    incremental = spec.source.incremental
    extra: dict[str, str] = {}
    if incremental is not None:
        value = request_value(cursor, incremental.initial, incremental.lookback)
        if value is not None:
            extra[incremental.param] = value
    if resume and saved.get("source") is None:  # every page was staged: only the commit is left
        return SyncResult(rows, pages, time.perf_counter() - started, seen_cursor)

    client = HttpSourceClient(
        spec.source, env=env, transport=transport, acquire=acquire, extra_params=extra
    )
    pending: asyncio.Task[object] | None = None
    try:
        async for page in client.pages(resume=saved.get("source") if resume else None):
            pages += 1
            table = records_to_arrow(page.records) if page.records else None
            if table is not None and incremental is not None:
                seen_cursor = newest(seen_cursor, batch_cursor(table, incremental.cursor_field))
            if table is not None:
                table = transformed(spec, table)
                table = table if table.num_rows else None
            checkpoint = {"source": page.checkpoint, "cursor": seen_cursor}
            if pending is not None:
                await pending  # stages stay in order: a checkpoint covers every page before it
            pending = asyncio.ensure_future(stage(table, checkpoint, pages))
            rows += table.num_rows if table is not None else 0
            if progress is not None:
                await progress(rows, pages)
        if pending is not None:
            await pending
            pending = None
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
    return SyncResult(rows, pages, time.perf_counter() - started, seen_cursor)
