"""SyncEngine actor: takes TriggerRun messages from the shared work queue, `slots` at a time.

Batches go to the Database actor as Arrow tables by ObjectRef (zero-copy through the object
store); the final commit (rows + cursor + `succeeded`) is one Database transaction. Events
(started, heartbeat, progressed, finished, failed, cancelled) go to the `status` topic; a
CancelRun on `control` stops the run and drops what it staged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import ray

from tg_actors import interfaces, unused
from tg_actors.attempts import Begun
from tg_actors.broker.client import BrokerClient
from tg_actors.coalesce import Coalescer
from tg_actors.engine.attempt import begin_of, describe, extract, tokens_of
from tg_actors.engine.fanout import build_commit
from tg_actors.engine.sync import ResponseCodes, Stage, SyncResult
from tg_actors.engine.work import Work, work_for
from tg_actors.errors import ChecksFailed, IllegalTransition, StaleAttempt
from tg_actors.jobs import JobSpec
from tg_actors.lifecycle import Boot
from tg_actors.messages import (
    TOPIC_CONTROL,
    TOPIC_STATUS,
    CancelRun,
    EngineStarted,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunHeartbeat,
    RunProgressed,
    RunStarted,
    TriggerRun,
)
from tg_actors.peer import face, own_actor_process
from tg_actors.sources.batches import records_to_arrow
from tg_actors.sources.http import SharedTransport
from tg_actors.wire import from_ipc, to_ipc

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.5  # at most two progress events a second per run
HEARTBEAT_S = 2.0  # the Scheduler's lease is several heartbeats long
PUBLISH_RETRY_S = 30.0  # how long status events wait for a broker that is restarting


def control_group(engine_id: str) -> str:
    """An engine's own group on `control`: every engine sees every command."""
    return f"engine:{engine_id}"


class SyncEngine:
    """Runs up to `slots` attempts at once. Each run begins and commits with its own call to
    the Database, which groups concurrent calls of every engine into one transaction; status
    events are coalesced here (tg_actors.coalesce): many short runs share each publish."""

    def __init__(
        self,
        engine_id: str,
        db: Any,
        broker: Any,
        limiter: Any = None,
        slots: int = 4,
        shared_work: bool = True,
    ) -> None:
        """`shared_work`: whether engines compete for runs (engine/work.py); False only for
        an engine that nothing adds others beside (`tg run`)."""
        if own_actor_process():
            unused.refuse("an engine")  # its first Arrow array would import pandas
            # the staged batches it sends the Database: one IPC stream each (tg_actors/wire.py)
            ray.util.register_serializer(pa.Table, serializer=to_ipc, deserializer=from_ipc)
        self._id = engine_id
        self._db: interfaces.Database = face(db)
        self._limiter: interfaces.RateLimiter | None = face(limiter) if limiter else None
        self._broker = BrokerClient(broker)
        self._work_source: Work = work_for(self._broker, shared_work)
        self._slots = max(1, slots)
        self._stop = asyncio.Event()
        self._draining = False  # being removed: takes no new work
        self._task: asyncio.Task[None] | None = None
        self._control: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self._runs: dict[str, tuple[TriggerRun, asyncio.Task[SyncResult | None]]] = {}
        self._slot_free = asyncio.Event()
        self._cancelled: deque[str] = deque(maxlen=1000)  # recent CancelRun ids
        self._done = 0
        self._transport: SharedTransport | None = None  # made in the actor's event loop
        self._status: Coalescer[Any, None] = Coalescer(self._publish_many)
        self._boot = Boot(self._start)

    async def start(self) -> None:
        """Wait until the engine has joined the engines' group on `triggers` (idempotent)."""
        await self._boot.wait()

    async def _start(self) -> None:
        records_to_arrow([{"warm_up": 1}])  # pays pyarrow's lazy imports before the first run
        gc.freeze()  # the long-lived boot objects leave the GC's scans (~20% of parse time)
        self._transport = SharedTransport(max_connections=max(10, 2 * self._slots))
        await self._work_source.join()
        group = control_group(self._id)
        # lossy: should this engine vanish without leaving its group, cancels sent to it
        # must not pile up until they hold back every publisher on `control`
        await self._broker.subscribe(TOPIC_CONTROL, group, lossy=True)
        # before any run: the Scheduler fails what this engine held before a restart (its
        # node or process was lost) instead of waiting for those runs' leases to run out
        await self._publish_many([EngineStarted(engine=self._id)])
        self._task = asyncio.create_task(self._work())
        self._control = asyncio.create_task(
            self._broker.pump(TOPIC_CONTROL, group, self._on_control, self._stop, lossy=True)
        )
        self._beat = asyncio.create_task(self._heartbeat())

    async def _on_control(self, message: Any) -> None:
        if isinstance(message, CancelRun):
            self._cancelled.append(message.run_id)
            running = self._runs.get(message.run_id)
            if running is not None:
                running[1].cancel()

    async def stop(self) -> None:
        self._stop.set()
        for task in (self._task, self._control, self._beat):
            if task is not None:
                task.cancel()
        for _, running in list(self._runs.values()):
            running.cancel()
        if self._transport is not None:
            await self._transport.close()

    async def drain(self, grace: float | None = None) -> list[str]:
        """Take no new work; give the runs in hand `grace` seconds (None: as long as they
        take) to end, then interrupt the rest. Returns the ids of the interrupted runs: their
        staged pages stay, so a retry elsewhere resumes after the last one."""
        self._draining = True
        self._slot_free.set()  # a loop waiting for a free slot sees the flag at once
        if self._task is not None:
            await asyncio.wait([self._task])  # ends within one queue poll (0.5 s)
        loop = asyncio.get_running_loop()
        deadline = None if grace is None else loop.time() + grace
        while self._runs and (deadline is None or loop.time() < deadline):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        left = list(self._runs)
        tasks = [task for _, task in self._runs.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        return left

    async def stats(self) -> dict[str, Any]:
        current = {run_id: message.job for run_id, (message, _) in self._runs.items()}
        first = next(iter(current.items()), (None, None))
        context = ray.get_runtime_context()
        return {
            "engine": self._id,
            "node_id": context.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "pid": os.getpid(),
            "draining": self._draining,
            "slots": self._slots,
            "current_runs": current,
            "current_run": first[0],  # the oldest of them (one-slot view)
            "current_job": first[1],
            "runs_done": self._done,
        }

    async def ping(self) -> str:
        """ "ok" once booted (its subscriptions run), else "booting" (tried again until so)."""
        return self._boot.state

    # -- the work loop ------------------------------------------------------------------------

    async def _work(self) -> None:
        while not self._stop.is_set() and not self._draining:
            if len(self._runs) >= self._slots:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            try:
                messages = await self._work_source.take(self._slots - len(self._runs))
            except Exception:  # the broker (or its queue actor) restarting, or gone
                log.warning("engine %s: work queue unavailable", self._id, exc_info=True)
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    await self._work_source.join()
                continue
            for message in messages:
                if message.run_id in self._cancelled:  # cancelled before it was picked up
                    await self._status.submit(
                        RunCancelled(
                            run_id=message.run_id, job=message.job, attempt=message.attempt
                        )
                    )
                    continue
                if message.run_id in self._runs:  # a duplicate delivery: one task per run
                    log.info("engine %s: run %s already in hand", self._id, message.run_id)
                    continue
                task = asyncio.create_task(self.run(message))
                self._runs[message.run_id] = (message, task)
                task.add_done_callback(functools.partial(self._finished, message.run_id))

    def _finished(self, run_id: str, _task: object = None) -> None:
        self._runs.pop(run_id, None)
        self._done += 1
        self._slot_free.set()

    async def _heartbeat(self) -> None:
        """Tells the Scheduler this engine is alive and on its runs (their lease), in one
        publish for all of them."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            beats = [
                RunHeartbeat(
                    run_id=run_id, job=message.job, attempt=message.attempt, engine=self._id
                )
                for run_id, (message, _) in list(self._runs.items())
            ]
            if beats:
                try:
                    await self._publish_many(beats)
                except Exception:
                    log.warning("engine %s: heartbeat not published", self._id, exc_info=True)

    # -- coalesced publishes ------------------------------------------------------------------

    async def _publish_many(self, messages: list[Any]) -> list[None]:
        # a restarting broker is waited out: a run's outcome must reach the Scheduler, or the
        # run waits for its lease (a duplicate, should the broker die mid-call, is rare)
        await self._broker.publish(TOPIC_STATUS, *messages, retry_for=PUBLISH_RETRY_S)
        return [None] * len(messages)

    # -- one attempt --------------------------------------------------------------------------

    async def run(self, message: TriggerRun) -> SyncResult | None:
        """One attempt; never raises: the outcome is an event on `status`."""
        run_id, job, attempt = message.run_id, message.job, message.attempt
        pages_seen = 0
        last_progress = time.monotonic()  # a run shorter than PROGRESS_EVERY_S reports none
        counted = ResponseCodes(self._transport)  # this attempt's responses by status code

        async def progress(rows: int, pages: int) -> None:
            nonlocal pages_seen, last_progress
            pages_seen = pages
            if time.monotonic() - last_progress < PROGRESS_EVERY_S:
                return
            last_progress = time.monotonic()
            try:  # progress is only news: losing it (broker down) must not fail the run
                await self._status.submit(
                    RunProgressed(run_id=run_id, job=job, attempt=attempt, rows=rows, pages=pages)
                )
            except Exception:
                log.warning("run %s: progress not published", run_id, exc_info=True)

        try:
            spec = JobSpec.model_validate(message.spec)
            begun = await self._db.begin_attempt(begin_of(spec, run_id, attempt), self._id)
            started = RunStarted(
                run_id=run_id, job=job, attempt=attempt, engine=self._id, ts=begun.started_at
            )
            await self._status.submit(started)
            if begun.resume is not None:
                log.info("run %s resumes after page %s", run_id, begun.resume.pages)
            result = await asyncio.wait_for(
                self._attempt(
                    spec, begun, self._stager(run_id, spec, message.attempt), progress, counted
                ),
                spec.timeout.total_seconds(),
            )
            rows = await self._db.commit_run(build_commit(spec, run_id, attempt, begun, result))
            failed_checks = []
            if spec.checks:  # which `warn` checks did not pass, for alerts and metrics
                outcome = await self._db.run_checks(run_id)
                failed_checks = [str(c["name"]) for c in outcome if not c["passed"]]
        except asyncio.CancelledError:
            if run_id not in self._cancelled:
                raise  # the engine itself is stopping
            await self._db.discard_run(run_id)  # nothing of a cancelled run is kept
            await self._status.submit(RunCancelled(run_id=run_id, job=job, attempt=attempt))
            return None
        except StaleAttempt as exc:  # superseded after a lost lease: the new attempt owns it
            log.warning("run %s: %s; stopping this attempt", run_id, exc)
            return None
        except IllegalTransition as exc:  # it ended meanwhile (cancelled): nothing to do
            log.info("run %s: %s; not running it", run_id, exc)
            await self._status.submit(RunCancelled(run_id=run_id, job=job, attempt=attempt))
            return None
        except Exception as exc:
            # staging and checkpoint stay: a retry of this run continues from the last page
            log.warning("run %s of %s failed: %s", run_id, job, describe(exc))
            failed = RunFailed(
                run_id=run_id,
                job=job,
                attempt=attempt,
                error=describe(exc),
                pages=pages_seen,
                final=bool(getattr(exc, "final", False)),  # a `fail` rule or check: no retry
                failed_checks=list(exc.failed_names()) if isinstance(exc, ChecksFailed) else [],
                requests=dict(counted.codes),
            )
            await self._status.submit(failed)
            return None
        finished = RunFinished(
            run_id=run_id,
            job=job,
            attempt=attempt,
            rows=rows,
            pages=result.pages,
            seconds=result.seconds,
            skipped=list(result.skipped),
            failed_checks=failed_checks,
            requests=dict(counted.codes),
            started_at=begun.started_at,
        )
        await self._status.submit(finished)
        return SyncResult(rows, result.pages, result.seconds, result.cursor)

    def _stager(self, run_id: str, spec: JobSpec, attempt: int) -> Stage:
        """Each batch goes to the Database actor with its checkpoint, the table by ObjectRef;
        the attempt number fences off writes of an attempt the Scheduler has replaced."""
        dest = spec.destination

        async def stage(table: pa.Table, checkpoint: dict[str, Any] | None, pages: int) -> None:
            await self._db.stage_batch(
                run_id,
                ray.put(table),
                checkpoint=checkpoint,
                pages=pages if checkpoint is not None else None,
                widen_to_varchar=dest.widen_to_varchar,
                destination=dest.table,
                attempt=attempt,
            )

        return stage

    async def _attempt(
        self, spec: JobSpec, begun: Begun, stage: Any, progress: Any, transport: ResponseCodes
    ) -> SyncResult:
        acquire = None
        limiter = self._limiter
        if spec.source.rate_limit is not None and limiter is not None:
            per_second = spec.source.rate_limit.per_second

            async def acquire() -> None:
                delay = await limiter.reserve(spec.name, per_second)
                if delay > 0:
                    await asyncio.sleep(delay)

        db, job = self._db, spec.name

        async def keep(token: str, origin: str) -> None:  # a rotation, saved in tg.state
            await db.save_refresh_token(job, token, origin)

        tokens = tokens_of(spec, begun, keep)
        return await extract(
            spec, begun, stage, progress, acquire=acquire, transport=transport, tokens=tokens
        )


if TYPE_CHECKING:  # the actor keeps the promises of its face: mypy checks this conversion

    def _keeps_its_face(actor: SyncEngine) -> interfaces.Engine:
        return actor
