"""Database actor: the one process that opens the DuckDB file read-write.

Every DuckStore call runs on one dedicated thread (DuckDB connections are not thread-safe;
one writer keeps the file consistent) while the actor's event loop stays free for callers.
It also subscribes to the `status` topic and writes engine events into `tg.run_logs`, and
keeps house: at boot and every `housekeeping_seconds` (5 min) it drops the staging of runs
that are not open and applies TG_RUN_RETENTION / TG_LOG_RETENTION (store/retention.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tg_actors.broker.client import BrokerClient
from tg_actors.coalesce import Coalescer
from tg_actors.lifecycle import Boot
from tg_actors.messages import (
    TOPIC_STATUS,
    RunFailed,
    RunFinished,
    RunProgressed,
    RunStarted,
    RunStateChanged,
)
from tg_actors.names import DATABASE_GROUP
from tg_actors.runstate import RunState
from tg_actors.settings import Settings, retention_seconds
from tg_actors.store.duckdb import DuckStore

log = logging.getLogger(__name__)
HOUSEKEEPING_SECONDS = 300.0  # how often closed runs' staging and retention are seen to

GROUP = DATABASE_GROUP  # its consumer group on `status`

# DuckStore methods exposed one-to-one as actor methods
STORE_METHODS = (
    "upsert_job",
    "delete_job",
    "get_job",
    "list_jobs",
    "set_paused",
    "create_run",
    "update_run",
    "get_run",
    "list_runs",
    "open_runs",
    "last_tick",
    "watermark",
    "job_versions",
    "missing_dependents",
    "run_counts",
    "last_runs",
    "add_logs",
    "get_logs",
    "stage_batch",
    "commit_run",
    "discard_run",
    "staged_rows",
    "save_checkpoint",
    "checkpoint",
    "discard_orphans",
    "staged_run_ids",
    "query",
    "cancel_run",
    "list_tables",
    "preview_table",
    "cursor",
)


def log_entry(message: Any) -> tuple[str, Any, str, str] | None:
    """The run_logs row an event deserves, if any."""
    match message:
        case RunStarted():
            return (message.run_id, message.ts, "INFO", f"started on {message.engine}")
        case RunProgressed():
            text = f"page {message.pages}: {message.rows} rows so far"
            return (message.run_id, message.ts, "DEBUG", text)
        case RunFinished():
            text = (
                f"loaded {message.rows} rows from {message.pages} pages in {message.seconds:.2f}s"
            )
            return (message.run_id, message.ts, "INFO", text)
        case RunFailed():
            return (message.run_id, message.ts, "ERROR", message.error)
        case RunStateChanged():
            text = f"state {message.previous or '-'} -> {message.state} ({message.trigger})"
            level = {RunState.FAILED: "ERROR", RunState.RETRYING: "WARNING"}.get(
                message.state, "INFO"
            )
            if message.error:
                text += f": {message.error}"
            return (message.run_id, message.ts, level, text)
    return None


class Database:
    def __init__(
        self,
        path: str,
        broker: Any = None,
        memory_limit: str | None = None,
        *,
        housekeeping_seconds: float = HOUSEKEEPING_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._housekeeping_seconds, self._sleep = housekeeping_seconds, sleep
        self._run_retention = _retention("TG_RUN_RETENTION", "run_retention")
        self._log_retention = _retention("TG_LOG_RETENTION", "log_retention")
        self._housekeeper: asyncio.Task[None] | None = None
        self.housekeeping_passes = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="duckdb")
        self._path = Path(path)
        self._store = self._executor.submit(
            functools.partial(DuckStore, self._path, memory_limit=memory_limit)
        ).result()
        self._broker = BrokerClient(broker) if broker is not None else None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # group commit across callers: calls that arrive while the DuckDB thread is busy go
        # together in the next transaction, so the load itself makes the batches bigger
        self._creates: Coalescer[dict[str, Any], str | None] = Coalescer(self._create_batch)
        self._begins: Coalescer[tuple[dict[str, Any], str], dict[str, Any]] = Coalescer(
            self._begin_batch
        )
        self._commits: Coalescer[dict[str, Any], int] = Coalescer(self._commit_batch)
        self._boot = Boot(self._start)

    async def create_runs(self, runs: list[dict[str, Any]]) -> list[str | None]:
        """DuckStore.create_runs, grouped with concurrent calls."""
        results = await self._creates.submit_all(runs)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if not isinstance(r, BaseException)]

    async def begin_attempts(self, items: list[dict[str, Any]], engine: str) -> list[Any]:
        """DuckStore.begin_attempts, grouped with concurrent calls (per-item errors returned)."""
        return await self._begins.submit_all([(item, engine) for item in items])

    async def commit_runs(self, items: list[dict[str, Any]]) -> list[Any]:
        """DuckStore.commit_runs, grouped with concurrent calls (per-item errors returned)."""
        return await self._commits.submit_all(items)

    async def _create_batch(self, runs: list[dict[str, Any]]) -> list[Any]:
        return list(await self._call(self._store.create_runs, runs))

    async def _begin_batch(self, items: list[tuple[dict[str, Any], str]]) -> list[Any]:
        results: list[Any] = [None] * len(items)
        by_engine: dict[str, list[int]] = {}
        for i, (_, engine) in enumerate(items):
            by_engine.setdefault(engine, []).append(i)
        for engine, indices in by_engine.items():
            begun = await self._call(
                self._store.begin_attempts, [items[i][0] for i in indices], engine
            )
            for i, result in zip(indices, begun, strict=True):
                results[i] = result
        return results

    async def _commit_batch(self, items: list[dict[str, Any]]) -> list[Any]:
        return list(await self._call(self._store.commit_runs, items))

    async def start(self) -> None:
        """Wait until the status subscription runs (it starts by itself, also after a restart)."""
        await self._boot.wait()

    async def _start(self) -> None:
        # staging of runs no longer open is garbage (cancelled before pick-up, job deleted)
        await self._call(self._store.discard_closed_staging)
        if self._housekeeper is None:  # once, also when the boot is tried again
            self._housekeeper = asyncio.create_task(self._keep_house())
            self._tasks.append(self._housekeeper)
        if self._broker is not None:
            await self._broker.subscribe(TOPIC_STATUS, GROUP)
            pump = self._broker.pump_batches(TOPIC_STATUS, GROUP, self._log, self._stop)
            self._tasks.append(asyncio.create_task(pump))

    async def _keep_house(self) -> None:
        while not self._stop.is_set():
            await self._sleep(self._housekeeping_seconds)
            if self._stop.is_set():
                return
            try:
                await self.housekeeping()
            except Exception:  # the next period tries again; the actor carries on
                log.exception("housekeeping of %s failed", self._path)

    async def housekeeping(self) -> dict[str, int]:
        """One pass: drop closed runs' staging, delete runs and logs past their retention."""
        dropped = await self._call(self._store.discard_closed_staging)
        pruned = await self._call(
            self._store.prune_history, self._run_retention, self._log_retention
        )
        self.housekeeping_passes += 1
        return {"staging": dropped, **pruned}

    async def _log(self, messages: list[Any]) -> None:
        entries = [entry for m in messages if (entry := log_entry(m)) is not None]
        if entries:  # one insert for the whole consumed batch
            await self._call(self._store.add_logs, entries)

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def stats(self) -> dict[str, dict[str, int]]:
        """Grouped calls so far: {kind: {"batches": n, "items": n}} (items / batches = how
        many callers each DuckDB transaction served)."""
        kinds: dict[str, Coalescer[Any, Any]] = {
            "create_runs": self._creates,
            "begin": self._begins,
            "commit": self._commits,
        }
        return {k: {"batches": c.batches, "items": c.items} for k, c in kinds.items()}

    async def ping(self) -> str:
        """ "ok" once booted (its subscriptions run), else "booting" (tried again until so)."""
        return self._boot.state

    async def path(self) -> str:
        return str(self._path)

    async def close(self) -> None:
        """Stop consuming, checkpoint and close the file. Safe to call twice."""
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await self._call(self._store.close)


def _retention(variable: str, field: str) -> float | None:
    """A retention setting as this actor's environment has it (Settings.engine_env puts it in
    every worker's), else the default; None keeps for ever."""
    raw = os.environ.get(variable)
    value = Settings.model_fields[field].default if raw is None else retention_seconds(raw)
    if value is None:
        return None
    assert isinstance(value, int | float)
    return float(value)


def _delegate(name: str) -> Callable[..., Any]:
    async def method(self: Database, *args: Any, **kwargs: Any) -> Any:
        return await self._call(getattr(self._store, name), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = getattr(DuckStore, name).__doc__
    return method


for _name in STORE_METHODS:
    setattr(Database, _name, _delegate(_name))
