"""One sync attempt, free of Ray: pages from the source -> Arrow -> transform -> stage.

The caller supplies `stage` (the engine sends each batch to the Database actor) and commits
at the end; nothing here touches the target table, so an attempt that fails leaves it as it was.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx
import pyarrow as pa

from tg_actors.jobs import JobSpec
from tg_actors.sources.batches import apply_transform, records_to_arrow
from tg_actors.sources.http import HttpSourceClient

Stage = Callable[[pa.Table], Awaitable[object]]
Progress = Callable[[int, int], Awaitable[object]]


@dataclass(frozen=True)
class SyncResult:
    rows: int
    pages: int
    seconds: float


async def extract_and_stage(
    spec: JobSpec,
    stage: Stage,
    progress: Progress | None = None,
    *,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> SyncResult:
    """Read every page of `spec.source`, stage each non-empty batch; returns the totals."""
    started = time.perf_counter()
    rows = pages = 0
    client = HttpSourceClient(spec.source, env=env, transport=transport)
    async for page in client.pages():
        pages += 1
        if page.records:
            table = records_to_arrow(page.records)
            if spec.transform is not None:
                table = apply_transform(table, spec.transform.sql)
            if table.num_rows:
                await stage(table)
                rows += table.num_rows
        if progress is not None:
            await progress(rows, pages)
    return SyncResult(rows, pages, time.perf_counter() - started)
