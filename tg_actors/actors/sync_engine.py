"""SyncEngine actor: takes TriggerRun messages from the shared work queue, one at a time.

Batches go to the Database actor as Arrow tables by ObjectRef (zero-copy through the object
store); the final commit (rows + cursor + `succeeded`) is one Database transaction. Events
(started, heartbeat, progressed, finished, failed, cancelled) go to the `status` topic; a
CancelRun on `control` stops the run and drops what it staged.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import deque
from typing import Any

import pyarrow as pa
import ray
from ray.util.queue import Empty

from tg_actors.actors.lifecycle import Boot
from tg_actors.broker_client import BrokerClient
from tg_actors.errors import StaleAttempt
from tg_actors.jobs import JobSpec
from tg_actors.messages import (
    TOPIC_CONTROL,
    TOPIC_STATUS,
    TOPIC_TRIGGERS,
    CancelRun,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunHeartbeat,
    RunProgressed,
    RunStarted,
    TriggerRun,
    utcnow,
)
from tg_actors.sources.batches import records_to_arrow
from tg_actors.sync import Stage, SyncResult, extract_and_stage

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.5  # at most two progress events a second per run
HEARTBEAT_S = 2.0  # the Scheduler's lease is several heartbeats long


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "attempt timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class SyncEngine:
    def __init__(self, engine_id: str, db: Any, broker: Any, limiter: Any = None) -> None:
        self._id = engine_id
        self._db = db
        self._limiter = limiter
        self._broker = BrokerClient(broker)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._current: TriggerRun | None = None
        self._running: asyncio.Task[SyncResult | None] | None = None
        self._control: asyncio.Task[None] | None = None
        self._cancelled: deque[str] = deque(maxlen=1000)  # recent CancelRun ids
        self._done = 0
        self._boot = Boot(self._start)

    async def start(self) -> None:
        """Wait until the engine has joined the engines' group on `triggers` (idempotent)."""
        await self._boot.wait()

    async def _start(self) -> None:
        records_to_arrow([{"warm_up": 1}])  # pays pyarrow's lazy imports before the first run
        gc.freeze()  # the long-lived boot objects leave the GC's scans (~20% of parse time)
        queue = await self._broker.subscribe(TOPIC_TRIGGERS, "engines", shared=True)
        group = f"engine:{self._id}"  # its own group: every engine sees every command
        await self._broker.subscribe(TOPIC_CONTROL, group)
        self._task = asyncio.create_task(self._work(queue))
        self._control = asyncio.create_task(
            self._broker.pump(TOPIC_CONTROL, group, self._on_control, self._stop)
        )

    async def _on_control(self, message: Any) -> None:
        if isinstance(message, CancelRun):
            self._cancelled.append(message.run_id)
            current = self._current
            if current is not None and current.run_id == message.run_id and self._running:
                self._running.cancel()

    async def stop(self) -> None:
        self._stop.set()
        for task in (self._task, self._control, self._running):
            if task is not None:
                task.cancel()

    async def stats(self) -> dict[str, Any]:
        current = self._current
        return {
            "engine": self._id,
            "current_run": current.run_id if current else None,
            "current_job": current.job if current else None,
            "runs_done": self._done,
        }

    async def ping(self) -> str:
        return "ok"

    async def _work(self, queue: Any) -> None:
        while not self._stop.is_set():
            try:
                message = await queue.get_async(timeout=0.5)
            except Empty:
                continue
            except Exception:  # the queue actor restarting
                log.warning("engine %s: work queue unavailable", self._id, exc_info=True)
                await asyncio.sleep(0.5)
                continue
            if message.run_id in self._cancelled:  # cancelled before it was picked up
                await self._publish(RunCancelled(run_id=message.run_id, job=message.job))
                continue
            self._current = message
            self._running = asyncio.create_task(self.run(message))
            beat = asyncio.create_task(self._heartbeat(message))
            try:
                await asyncio.shield(self._running)
            except asyncio.CancelledError:
                if self._stop.is_set():
                    raise
            finally:
                beat.cancel()
                self._current = self._running = None
                self._done += 1

    async def _heartbeat(self, message: TriggerRun) -> None:
        """Tells the Scheduler this engine is alive and on the run (its lease)."""
        beat = RunHeartbeat(run_id=message.run_id, job=message.job, engine=self._id)
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self._publish(beat.model_copy(update={"ts": utcnow()}))

    async def _publish(self, message: Any) -> None:
        await self._broker.publish(TOPIC_STATUS, message)

    async def run(self, message: TriggerRun) -> SyncResult | None:
        """One attempt; never raises: the outcome is an event on `status`."""
        run_id, job = message.run_id, message.job
        pages_seen = 0
        last_progress = 0.0

        async def progress(rows: int, pages: int) -> None:
            nonlocal pages_seen, last_progress
            pages_seen = pages
            if time.monotonic() - last_progress < PROGRESS_EVERY_S:
                return
            last_progress = time.monotonic()
            await self._broker.publish(
                TOPIC_STATUS, RunProgressed(run_id=run_id, job=job, rows=rows, pages=pages)
            )

        try:
            await self._publish(RunStarted(run_id=run_id, job=job, engine=self._id))
            spec = JobSpec.model_validate(message.spec)
            result = await asyncio.wait_for(
                self._attempt(run_id, spec, self._stager(run_id, spec, message.attempt), progress),
                spec.timeout.total_seconds(),
            )
            dest = spec.destination
            rows = await self._db.commit_run.remote(
                run_id,
                table=dest.table,
                write=dest.write.value,
                primary_key=list(dest.primary_key),
                pages=result.pages,
                cursor=(job, result.cursor) if result.cursor else None,
                widen_to_varchar=dest.widen_to_varchar,
                attempt=message.attempt,
            )
        except asyncio.CancelledError:
            if run_id not in self._cancelled:
                raise  # the engine itself is stopping
            await self._db.discard_run.remote(run_id)  # nothing of a cancelled run is kept
            await self._publish(RunCancelled(run_id=run_id, job=job))
            return None
        except StaleAttempt as exc:  # superseded after a lost lease: the new attempt owns it
            log.warning("run %s: %s; stopping this attempt", run_id, exc)
            return None
        except Exception as exc:
            # staging and checkpoint stay: a retry of this run continues from the last page
            log.warning("run %s of %s failed: %s", run_id, job, describe(exc))
            await self._broker.publish(
                TOPIC_STATUS,
                RunFailed(run_id=run_id, job=job, error=describe(exc), pages=pages_seen),
            )
            return None
        await self._broker.publish(
            TOPIC_STATUS,
            RunFinished(
                run_id=run_id, job=job, rows=rows, pages=result.pages, seconds=result.seconds
            ),
        )
        return SyncResult(rows, result.pages, result.seconds, result.cursor)

    def _stager(self, run_id: str, spec: JobSpec, attempt: int) -> Stage:
        """Each batch goes to the Database actor with its checkpoint, the table by ObjectRef;
        the attempt number fences off writes of an attempt the Scheduler has replaced."""
        dest = spec.destination

        async def stage(table: pa.Table, checkpoint: dict[str, Any] | None, pages: int) -> None:
            await self._db.stage_batch.remote(
                run_id,
                ray.put(table),
                checkpoint=checkpoint,
                pages=pages if checkpoint is not None else None,
                widen_to_varchar=dest.widen_to_varchar,
                destination=dest.table,
                attempt=attempt,
            )

        return stage

    async def _attempt(self, run_id: str, spec: JobSpec, stage: Any, progress: Any) -> SyncResult:
        resume = await self._db.checkpoint.remote(run_id)
        if resume is None:
            await self._db.discard_run.remote(run_id)  # staging without checkpoint: start clean
        else:
            log.info("run %s resumes after page %s", run_id, resume["pages"])
        cursor = None
        if spec.source.incremental is not None:
            cursor = await self._db.cursor.remote(spec.name)
        acquire = None
        if spec.source.rate_limit is not None and self._limiter is not None:
            per_second = spec.source.rate_limit.per_second

            async def acquire() -> None:
                delay = await self._limiter.reserve.remote(spec.name, per_second)
                if delay > 0:
                    await asyncio.sleep(delay)

        return await extract_and_stage(
            spec, stage, progress, resume=resume, cursor=cursor, acquire=acquire
        )
