"""One sync attempt of a job with `source.for_each` or `source.window`, free of Ray.

Each for_each row (or the job itself, without for_each) is a chain: its windows one after
another (or one pagination without window), each window paginated as the job says. Up to
`for_each.concurrency` chains read at once, every request under the job's one rate limit.
Pages of all chains go into one Stager (engine/sync.py), so staging stays in order and a
checkpoint covers every page before it: it is the ChainBook's snapshot (chains.py) after the
last page staged, {done rows, open rows with their window and page checkpoint}. A retried
attempt skips the done rows and continues the open ones after their last staged page.

Positions: each chain's cursor (the newest `cursor_field` value of its records) and window
position (where its next window starts) go with the commit, keyed by the row's values, and
are merged forward-only into tg.state: rows never share a cursor. A backfill reads its range
and commits no position; a refresh starts from `window.start` / `incremental.initial` and
its commit replaces the table and the positions.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from datetime import datetime
from typing import Any

import httpx
import pyarrow as pa

from tg_actors.attempts import Begun, Commit
from tg_actors.chains import (
    ChainBook,
    ChainState,
    Scalar,
    as_iso,
    chain_key,
    fill_source,
    parse_instant,
    row_values,
    slices,
    source_placeholders,
    window_values,
)
from tg_actors.engine.sync import (
    Acquire,
    Mark,
    Progress,
    Stage,
    Stager,
    SyncResult,
    batch_cursor,
    incremental_params,
    transformed,
)
from tg_actors.errors import SourceError
from tg_actors.incremental import newest
from tg_actors.jobs import HttpSource, Incremental, JobSpec, WriteMode
from tg_actors.runstate import Trigger
from tg_actors.sources.batches import records_to_arrow, with_columns
from tg_actors.sources.http import HttpSourceClient, local_limit
from tg_actors.sources.requester import TokenCache


def fans_out(spec: JobSpec) -> bool:
    """Whether the job reads chains (for_each or window) rather than one pagination."""
    return spec.source.for_each is not None or spec.source.window is not None


class ChainStager(Stager):
    """The Stager of many chains: each page's mark is the book's snapshot after it; one
    flush at a time (chains flush from several tasks), so stages stay in order."""

    def __init__(self, spec: JobSpec, stage: Stage, rows: int, pages: int, book: ChainBook):
        super().__init__(spec, stage, rows, pages, None)
        self.book = book
        self.extra: dict[str, Any] = {}  # beside the chains in each checkpoint: until, complete
        self._flushing = asyncio.Lock()

    def add_chain(
        self,
        key: str,
        records: list[dict[str, Any]],
        include: Mapping[str, Scalar],
        state: ChainState,
        done: bool,
        table: pa.Table | None = None,
    ) -> None:
        """One page of chain `key`; `state`: the chain after this page (its cursor is updated
        here from the page's records); `done`: the chain's last page; `table`: the page's
        rows already in Arrow (`Page.table`), taken instead of `records`."""
        self.pages += 1
        if table is None:
            table = records_to_arrow(records) if records else None
        elif not table.num_rows:
            table = None
        incremental = self.spec.source.incremental
        if table is not None and incremental is not None:
            state.cursor = newest(state.cursor, batch_cursor(table, incremental.cursor_field))
        if done:
            self.book.finish(key, state)
        else:
            self.book.page(key, state)
        if table is None:
            return
        table = with_columns(table, include)
        table = transformed(self.spec, table)
        if table.num_rows:
            self._batch.add(table, Mark(self._here(None), self.pages))
            self.rows += table.num_rows

    async def flush_chains(self, force: bool = False) -> None:
        async with self._flushing:
            await self.flush(None, force)

    def _here(self, source_checkpoint: dict[str, Any] | None) -> Callable[[], dict[str, Any]]:
        """The book as it is now, made into JSON only if it is staged (a snapshot per page
        is cheap; a JSON of every finished row per page would not be)."""
        snapshot, extra = self.book.snapshot(), dict(self.extra)
        return lambda: {"chains": snapshot(), **extra}


async def extract_chains(
    spec: JobSpec,
    stage: Stage,
    progress: Progress | None = None,
    *,
    begun: Begun,
    now: datetime,
    acquire: Acquire | None = None,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    keep_tail: bool = False,
    tokens: TokenCache | None = None,
) -> SyncResult:
    """Read every chain of the job (from `begun.resume` on), stage the pages; the totals and
    the positions to commit (None for a backfill). `now`: the end of `window.end: now`."""
    started = time.perf_counter()
    resume = begun.resume
    saved = dict(resume.checkpoint) if resume else {}
    book = ChainBook(saved.get("chains"))
    stager = ChainStager(
        spec, stage, resume.rows if resume else 0, resume.pages if resume else 0, book
    )
    plan = _Plan(spec, begun, saved.get("until"), now)
    if resume and saved.get("complete"):  # every chain was staged: only the commit is left
        return plan.result(stager, started)
    stager.extra = {"until": plan.until_text}
    if acquire is None and spec.source.rate_limit is not None:
        acquire = local_limit(spec.source.rate_limit)  # one budget for all chains of the run
    chains = _Chains(plan, stager, progress, acquire, env, transport)
    if tokens is not None:
        chains.tokens = tokens  # the engine's: a rotated refresh token is saved at once
    for_each = spec.source.for_each
    try:
        await _all_or_none([chains.work() for _ in range(for_each.concurrency if for_each else 1)])
        stager.extra = {"until": plan.until_text, "complete": True}
        tail = stager.take_tail() if keep_tail else None
        if tail is None:
            await stager.flush_chains(force=True)
        await stager.wait()
    except Exception:
        with contextlib.suppress(Exception):  # let the stage in flight land: a retry resumes
            await stager.wait()
        raise
    finally:
        stager.abandon()
    return plan.result(stager, started, tail)


class _Chains:
    """The chains of one attempt, read by `work()` tasks from one shared iterator of rows."""

    def __init__(
        self,
        plan: _Plan,
        stager: ChainStager,
        progress: Progress | None,
        acquire: Acquire | None,
        env: Mapping[str, str] | None,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self.plan, self.stager, self.book = plan, stager, stager.book
        self.source = plan.spec.source
        self._progress, self._acquire, self._env, self._transport = (
            progress,
            acquire,
            env,
            transport,
        )
        self.tokens = TokenCache(time.monotonic)  # one oauth2 token for all chains
        self._rows = iter(plan.rows())

    async def work(self) -> None:
        for row in self._rows:  # shared: each row is read by one task
            await self.chain(row)

    async def chain(self, row: Mapping[str, Any]) -> None:
        plan, source, book = self.plan, self.source, self.book
        values = row_values(row, f"job {plan.spec.name}: for_each row")
        plan.check_row(values)
        key = chain_key(values) if source.for_each is not None else ""
        if book.is_done(key):
            return
        names = source.for_each.include if source.for_each is not None else []
        include = {name: values[name] for name in names}
        open_state = book.state(key)
        committed = plan.committed.get(key, {})
        params = plan.params(committed.get("cursor"))
        window = source.window
        if window is None:
            state = open_state or ChainState(committed.get("cursor"), None, None)
            await self.pages(key, values, include, state, params, last=True)
            return
        state = open_state or ChainState(committed.get("cursor"), plan.first_window(committed))
        since = parse_instant(state.window) if state.window else plan.until
        pieces = list(slices(since, plan.until, window.step))
        if not pieces:
            book.finish(key, state)
            return
        for i, piece in enumerate(pieces):
            state.window = as_iso(piece.start)
            filled = {**values, **window_values(piece, window.format.value)}
            last = i == len(pieces) - 1
            if await self.pages(key, filled, include, state, params, last=last, end=piece.end):
                return  # a skip rule ended this row
            state = ChainState(state.cursor, as_iso(piece.end), None)

    async def pages(
        self,
        key: str,
        values: Mapping[str, Scalar],
        include: Mapping[str, Scalar],
        state: ChainState,
        params: dict[str, str],
        *,
        last: bool,
        end: datetime | None = None,
    ) -> bool:
        """One pagination of chain `key` (one window of it), from `state.source` on; `last`:
        the chain ends with it. `state.cursor` is the chain's newest cursor afterwards.
        True when a `skip` rule ended it: then the whole chain (the row) ends here."""
        client = HttpSourceClient(
            self.plan.filled(values),
            env=self._env,
            transport=self._transport,
            acquire=self._acquire,
            extra_params=params,
            tokens=self.tokens,
            full_read=end is None,  # a window slice is not the whole read
        )
        cursor, skipped = state.cursor, False
        async with contextlib.aclosing(client.pages(resume=state.source)) as pages:
            async for page in pages:
                finished = page.checkpoint is None
                window = as_iso(end) if finished and end is not None else state.window
                after = ChainState(cursor, window, page.checkpoint)
                if page.skipped:
                    self.stager.skipped.append(page.url)
                    skipped = True
                done = finished and (last or skipped)
                self.stager.add_chain(key, page.records, include, after, done, page.table)
                cursor = after.cursor
                await self.stager.flush_chains()
                if self._progress is not None:
                    await self._progress(self.stager.rows, self.stager.pages)
        state.cursor = cursor
        return skipped


async def _all_or_none(jobs: list[Coroutine[Any, Any, None]]) -> None:
    """Run `jobs` at once; the first to fail cancels the others and its error is raised (as
    itself, not in an ExceptionGroup: the run's error reads as what went wrong)."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Plan:
    """What this attempt reads: its rows, the end of its windows, the positions it starts
    from and the incremental filter, by the run's trigger (normal, backfill, refresh)."""

    def __init__(self, spec: JobSpec, begun: Begun, until: str | None, now: datetime) -> None:
        self.spec, self.begun = spec, begun
        self.backfill = begun.range if begun.trigger == Trigger.BACKFILL else None
        self.refresh = begun.trigger == Trigger.REFRESH
        # a backfill or a refresh starts from nothing stored; a backfill writes nothing back
        fresh = self.backfill is not None or self.refresh
        self.committed: dict[str, dict[str, Any]] = {} if fresh else dict(begun.positions or {})
        window = spec.source.window
        if until is not None:  # a resumed attempt keeps its first attempt's end
            self.until = parse_instant(until)
        elif self.backfill is not None:
            self.until = self.backfill[1]
        elif window is not None and isinstance(window.end, datetime):
            self.until = window.end
        else:
            self.until = now
        self.until_text = as_iso(self.until)
        self._stored = spec.source.model_dump(mode="json", by_alias=True)
        self._needs = {name for _, name in source_placeholders(self._stored)}

    def rows(self) -> Iterator[Mapping[str, Any]]:
        for_each = self.spec.source.for_each
        if for_each is None:
            yield {}
        elif for_each.values is not None:
            yield from for_each.values
        elif self.begun.rows is not None:
            for batch in self.begun.rows.to_batches(max_chunksize=1024):
                yield from batch.to_pylist()

    def check_row(self, values: Mapping[str, Scalar]) -> None:
        """A placeholder or include the rows do not have fails the run, naming it."""
        known = set(values) | ({"window_start", "window_end"} if self.spec.source.window else set())
        wanted = self._needs | set(
            self.spec.source.for_each.include if self.spec.source.for_each else []
        )
        missing = sorted(wanted - known)
        if missing:
            raise SourceError(
                f"job {self.spec.name}: the for_each rows have no column {', '.join(missing)}"
                f" (they have {', '.join(sorted(values)) or 'none'})"
            )

    def first_window(self, committed: Mapping[str, Any]) -> str:
        window = self.spec.source.window
        assert window is not None
        if self.backfill is not None:
            return as_iso(self.backfill[0])
        if committed.get("window"):
            return as_iso(parse_instant(str(committed["window"])) - window.lookback)
        return as_iso(window.start)

    def params(self, cursor: str | None) -> dict[str, str]:
        """The incremental filter of a chain: from its committed cursor (a refresh: from
        `initial`); a backfill without window sends its range (from, until_param: to)."""
        incremental = self.spec.source.incremental
        if incremental is None:
            return {}
        if self.backfill is not None:
            if self.spec.source.window is not None:
                return {}  # the windows are the range
            return backfill_filter(incremental, self.backfill)
        return incremental_params(self.spec, cursor)

    def filled(self, values: Mapping[str, Scalar]) -> HttpSource:
        return HttpSource.model_validate(fill_source(self._stored, values))

    def result(
        self, stager: ChainStager, started: float, tail: pa.Table | None = None
    ) -> SyncResult:
        positions = None if self.backfill is not None else stager.book.positions()
        seconds = time.perf_counter() - started
        skipped = tuple(stager.skipped)
        return SyncResult(stager.rows, stager.pages, seconds, None, tail, positions, skipped)


def plain_filter(spec: JobSpec, begun: Begun) -> tuple[str | None, dict[str, str] | None]:
    """(committed cursor, incremental filter or None: from the cursor) of a job without
    for_each or window, by the run's trigger: a refresh reads from `initial`, a backfill
    sends its range (`param`: from, `until_param`: to)."""
    if begun.trigger == Trigger.REFRESH:
        return None, None
    incremental = spec.source.incremental
    if begun.trigger == Trigger.BACKFILL and begun.range is not None and incremental is not None:
        return None, backfill_filter(incremental, begun.range)
    return begun.cursor, None


def backfill_filter(incremental: Incremental, span: tuple[datetime, datetime]) -> dict[str, str]:
    """A backfill's incremental filter: `param` from, `until_param` (if the job has one) to."""
    start, end = span
    params = {incremental.param: as_iso(start)}
    if incremental.until_param:
        params[incremental.until_param] = as_iso(end)
    return params


def build_commit(
    spec: JobSpec, run_id: str, attempt: int | None, begun: Begun, result: SyncResult
) -> Commit:
    """The Commit of a finished attempt, by the run's trigger: a backfill moves no cursor
    and no position; a refresh replaces the table and resets the job's cursor and positions
    to this run's; any other run merges them forward."""
    dest = spec.destination
    backfill = begun.trigger == Trigger.BACKFILL
    refresh = begun.trigger == Trigger.REFRESH
    cursor = None if backfill or not result.cursor else (spec.name, result.cursor)
    return Commit(
        run_id,
        table=dest.table,
        write=WriteMode.REPLACE if refresh else dest.write,
        primary_key=tuple(dest.primary_key),
        pages=result.pages,
        cursor=cursor,
        widen_to_varchar=dest.widen_to_varchar,
        attempt=attempt,
        batch=result.tail,
        export=dest.export,
        positions=None if backfill else result.positions,
        reset_state=refresh,
        job=spec.name,
        skipped_requests=len(result.skipped),
        checks=tuple(spec.checks),
        schema_contract=dest.schema_contract,
    )
