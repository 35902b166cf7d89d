"""The API layer: what routes and the UI may do, over the actors' handles.

Routes and the Gradio UI both call this class; neither talks to actors directly, so the UI
sees exactly what the API returns (secrets masked). Reads ask the actors; every change (a
job saved, deleted, paused or resumed, a run triggered or cancelled, engines scaled) is a
command published on the broker's `commands` topic and answered by its owner through the
reply mailbox, within a bounded wait (tg_actors/commands). A command id given by the caller
(the Idempotency-Key header) makes a command sent again be applied once.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

import orjson
import ray

from serve.cache import TtlCache
from serve.events import EventHub
from serve.formats import Format, encode
from serve.preview import test_read
from serve.sql import open_batches
from tg_actors import interfaces
from tg_actors.broker.client import BrokerClient
from tg_actors.engine.preview import DEFAULT_PAGES, DEFAULT_SAMPLE
from tg_actors.errors import CommandUnanswered, JobNotFound
from tg_actors.jobs import parse_job
from tg_actors.messages import (
    TOPIC_COMMANDS,
    CancelRunCommand,
    Command,
    DeleteJob,
    ScaleEngines,
    SetPaused,
    TriggerJob,
    UpsertJob,
)
from tg_actors.metrics import exposition, tg_version
from tg_actors.names import BROKER, CONFIG, DATABASE, POOL, SCHEDULER
from tg_actors.peer import face
from tg_actors.runstate import Trigger
from tg_actors.store.schema import RUN_FIELDS, jsonable

# asks one actor whether it has booted (its ping or start), through its face
Probe = Callable[[Any], Awaitable[Any]]
BOOT_WAIT_S = 2.0  # how long health waits on one actor's start() before saying "starting"
COMMAND_WAIT_S = 10.0  # how long a command waits for its answer before a 503
# a scale may place engines (up to 120 s, engine/pool.py) and drain removed ones (grace)
SCALE_WAIT_S = 180.0


def _public_engine(stats: dict[str, Any]) -> dict[str, Any]:
    current = stats.get("current_runs") or {}
    keys = ("name", "engine", "state", "node_id", "node_ip", "pid", "slots", "runs_done", "error")
    return {k: stats[k] for k in keys if k in stats} | {"current_runs": sorted(current)}


def public_run(row: dict[str, Any]) -> dict[str, Any]:
    return dict(jsonable({k: row.get(k) for k in RUN_FIELDS}))


async def _encode(answer: Awaitable[Any]) -> bytes:
    return orjson.dumps(await answer)


class ApiService:
    def __init__(self, namespace: str, cache_seconds: float = 1.0) -> None:
        self.namespace = namespace
        self._handles: dict[str, Any] = {}
        # list views polled by many clients share answers for `cache_seconds`; writes clear it
        self.lists = TtlCache(cache_seconds)
        self.events = EventHub(lambda: self._actor(BROKER))
        self._ready = False  # every component seen booted once: "starting" is over
        self.boot_wait = BOOT_WAIT_S
        self.command_wait = COMMAND_WAIT_S
        self.who: Literal["api", "ui"] = "api"  # who the audit log says sent its commands

    def for_ui(self) -> ApiService:
        """This service as the UI uses it: the same handles, caches and event hub; its
        commands are the UI's in the audit log."""
        view = copy.copy(self)
        view.who = "ui"
        return view

    def _lookup(self, name: str) -> Any:
        """The named actor's handle; ValueError when there is none."""
        return ray.get_actor(name, namespace=self.namespace)

    def _actor(self, name: str) -> Any:
        if name not in self._handles:
            self._handles[name] = self._lookup(name)
        return self._handles[name]

    # the actors' faces (tg_actors/interfaces.py): typed calls, Ray's errors translated once
    @property
    def _db(self) -> interfaces.Database:
        return face(self._actor(DATABASE))  # type: ignore[no-any-return]

    @property
    def _config(self) -> interfaces.ConfigManager:
        return face(self._actor(CONFIG))  # type: ignore[no-any-return]

    @property
    def _scheduler(self) -> interfaces.Scheduler:
        return face(self._actor(SCHEDULER))  # type: ignore[no-any-return]

    @property
    def _pool(self) -> interfaces.EnginePool:
        return face(self._actor(POOL))  # type: ignore[no-any-return]

    # -- health -----------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """{"status": "ok" | "starting" | "degraded", "components": {name: "alive" |
        "starting" | "dead"}}. "ok" only once every actor has booted (its `start()` has
        returned) and the Scheduler has engine slots: a run triggered now would be taken.
        Until then "starting"; after, a component down makes it "degraded"."""
        checks = {
            "broker": self._booted(BROKER, lambda broker: broker.ping()),
            "database": self._booted(DATABASE, lambda db: db.start()),
            "config_manager": self._booted(CONFIG, lambda config: config.ping()),
            "scheduler": self._scheduler_ready(),
            "engines": self._engines_ready(),
        }
        states = await asyncio.gather(*checks.values())
        components = dict(zip(checks, states, strict=True))
        if all(s == "alive" for s in states):
            self._ready = True
            status = "ok"
        else:
            status = "degraded" if self._ready else "starting"
        return {"status": status, "components": components}

    async def _booted(self, name: str, probe: Probe) -> str:
        """The actor's state: "alive" once `probe` (its ping or start) answers, "starting"
        while it does not exist yet or its boot has not finished, "dead" when the call fails."""
        try:
            handle = self._actor(name)
        except ValueError:  # not made yet (start-up), or gone
            return "dead" if self._ready else "starting"
        state, _ = await self._answer(probe(face(handle)))
        if state == "dead":
            self._handles.pop(name, None)
        return state

    async def _answer(self, call: Awaitable[Any]) -> tuple[str, Any]:
        try:
            answer = await asyncio.wait_for(call, self.boot_wait)
        except TimeoutError:
            return "starting", None
        except Exception:
            return "dead", None
        return "alive", answer

    async def _scheduler_ready(self) -> str:
        state = await self._booted(SCHEDULER, lambda scheduler: scheduler.start())
        if state != "alive":
            return state
        state, status = await self._answer(self._scheduler.status())
        if state != "alive":
            return state
        return "alive" if status["slots"] > 0 else "starting"  # no engine slots: nothing taken

    async def _engines_ready(self) -> str:
        state = await self._booted(POOL, lambda pool: pool.ping())
        if state != "alive":
            return state
        state, names = await self._answer(self._pool.names())
        if state != "alive" or not names:
            return "starting" if state != "dead" else state
        states = await asyncio.gather(*(self._engine_booted(n) for n in names))
        for worst in ("dead", "starting"):
            if worst in states:
                return worst
        return "alive"

    async def _engine_booted(self, name: str) -> str:
        try:
            handle = self._lookup(name)  # not cached: engines come and go at run time
        except ValueError:
            return "starting"
        engine: interfaces.Engine = face(handle)
        state, _ = await self._answer(engine.start())
        return state

    # -- jobs -------------------------------------------------------------------------------

    async def list_jobs(self) -> list[dict[str, Any]]:
        jobs, status, last = await asyncio.gather(
            self._config.list(),
            self._scheduler.job_status(),
            self._db.last_runs(),  # one query, not one per job
        )
        out = []
        for job in jobs:
            newest = last.get(job["name"])
            out.append(
                {
                    "name": job["name"],
                    "enabled": job["enabled"],
                    "paused": job["paused"],
                    "schedule": job.get("schedule"),
                    "next_run_at": status.get(job["name"], {}).get("next_run_at"),
                    "last_run": public_run(newest) if newest else None,
                }
            )
        return out

    async def list_jobs_json(self) -> bytes:
        return await self.lists.get(("jobs",), lambda: _encode(self.list_jobs()))

    async def list_runs_json(self, job: str | None, state: str | None, limit: int) -> bytes:
        key = ("runs", job, state, limit)
        return await self.lists.get(key, lambda: _encode(self.list_runs(job, state, limit)))

    async def get_job(self, name: str) -> dict[str, Any]:
        job = await self._config.get(name)
        status = (await self._scheduler.job_status()).get(name, {})
        runs = await self._db.list_runs(job=name, limit=1)
        job["status"] = {
            "paused": job["paused"],
            "next_run_at": status.get("next_run_at"),
            "active_runs": status.get("active_runs", 0),
            "last_run": public_run(runs[0]) if runs else None,
        }
        return dict(job)

    async def job_yaml(self, name: str) -> str:
        """The stored job as YAML for an editor, secrets as `***` (saved back, they keep the
        stored reference)."""
        import yaml

        job = await self._config.get(name)
        spec = {k: v for k, v in job.items() if k not in ("paused", "origin")}
        return str(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))

    async def validate_job(
        self, body: dict[str, Any] | str, name: str | None = None
    ) -> dict[str, Any]:
        """The job as it would be stored (secrets masked); JobValidationError; stores nothing."""
        return dict(await self._config.validate(body, name))

    async def run_stats(self, days: int = 7) -> dict[str, Any]:
        """For the UI's charts: runs by state, and rows loaded per succeeded run over time."""
        counts, loaded = await asyncio.gather(self._db.run_counts(), self._db.loaded_since(days))
        for point in loaded:
            point["finished_at"] = point["finished_at"].isoformat()
        return {"by_state": dict(counts), "loaded": loaded}

    async def _command(self, command: Command, wait: float | None = None) -> Any:
        """Publish `command` on `commands` and wait for its owner's answer: the value, or the
        error it was refused with (JobValidationError, JobNotFound, ...). CommandUnanswered
        (503) when no answer comes in the bounded wait."""
        self.lists.clear()
        try:
            broker = BrokerClient(self._actor(BROKER))
        except ValueError:  # not made yet, or gone for good
            raise CommandUnanswered(command.command_id, command.kind, "no broker") from None
        try:
            reply = await broker.request(TOPIC_COMMANDS, command, wait or self.command_wait)
        finally:
            self.lists.clear()  # what changed is seen by the next list
        return reply.result()

    def _id(self, command_id: str | None) -> dict[str, Any]:
        minted = command_id is None
        return {"command_id": command_id or uuid.uuid4().hex, "who": self.who, "minted": minted}

    async def put_job(
        self, name: str, body: dict[str, Any] | str, *, command_id: str | None = None
    ) -> tuple[bool, dict[str, Any]]:
        answer = await self._command(UpsertJob(name=name, body=body, **self._id(command_id)))
        return bool(answer["created"]), await self.get_job(name)

    async def delete_job(self, name: str, *, command_id: str | None = None) -> None:
        await self._command(DeleteJob(name=name, **self._id(command_id)))

    async def set_paused(
        self, name: str, paused: bool, *, command_id: str | None = None
    ) -> dict[str, Any]:
        kind = "pause" if paused else "resume"
        await self._command(SetPaused(kind=kind, name=name, **self._id(command_id)))
        return dict((await self.get_job(name))["status"]) | {"name": name}

    async def trigger(
        self, name: str, priority: int | None = None, *, command_id: str | None = None
    ) -> str:
        command = TriggerJob(name=name, priority=priority, **self._id(command_id))
        return str(await self._command(command))

    async def backfill(
        self, name: str, start: datetime, end: datetime, *, command_id: str | None = None
    ) -> str:
        """JobNotFound (404) or BackfillRefused (422, saying why)."""
        ids = self._id(command_id)
        command = TriggerJob(name=name, trigger=Trigger.BACKFILL, start=start, end=end, **ids)
        return str(await self._command(command))

    async def refresh(self, name: str, *, command_id: str | None = None) -> str:
        command = TriggerJob(name=name, trigger=Trigger.REFRESH, **self._id(command_id))
        return str(await self._command(command))

    async def cancel(self, run_id: str, *, command_id: str | None = None) -> str:
        """RunNotFound (404) or IllegalTransition (409, the run already ended)."""
        return str(await self._command(CancelRunCommand(run_id=run_id, **self._id(command_id))))

    async def list_commands(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The audit log of commands, newest first: {command_id, kind, job, who, received_at,
        answered_at (ISO or None), outcome (None: not answered yet)}."""
        return jsonable(await self._db.list_commands(job, limit))  # type: ignore[no-any-return]

    def follow(self, job: str | None = None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """The `status` topic's events as `/api/events` streams them, as (event, data), for
        the UI's live views (serve/events.py)."""
        return self.events.follow(job)

    # -- engines ----------------------------------------------------------------------------

    async def engines(self) -> dict[str, Any]:
        """The engines, where they run and what they hold; the Scheduler's capacity."""
        engines, sched = await asyncio.gather(self._pool.describe(), self._scheduler.status())
        return {
            "count": len(engines),
            "capacity": sched["slots"],
            "running": sched["running"],
            "queue_depth": sched["queue_depth"],
            "nodes": len({e["node_id"] for e in engines if e.get("node_id")}),
            "engines": [_public_engine(e) for e in engines],
        }

    async def scale_engines(
        self, count: int, grace: float | None = None, *, command_id: str | None = None
    ) -> dict[str, Any]:
        """Add or remove engines without stopping anything (see EnginePool.scale)."""
        command = ScaleEngines(count=count, grace=grace, **self._id(command_id))
        outcome = await self._command(command, SCALE_WAIT_S + (grace or 0.0))
        changes = {k: outcome[k] for k in ("added", "removed", "interrupted")}
        return {**(await self.engines()), **changes}

    async def metrics(self) -> str:
        """Prometheus text (tg_actors/metrics.py) of one Scheduler snapshot: runs active and
        ended, rows, durations, source responses, queue, engines, trigger lateness, each job's
        last success, staleness and failed checks; no DuckDB query per scrape."""
        snap = await self._scheduler.metrics()
        return exposition({**snap, "version": tg_version()}).decode()

    # -- runs, tables -----------------------------------------------------------------------

    async def list_runs(
        self, job: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        rows = await self._db.list_runs(job=job, state=state, limit=limit)
        return [public_run(r) for r in rows]

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The run, with `checks`: its check results (empty when its job has none)."""
        row = await self._db.get_run(run_id)
        if not row:
            return None
        checks = await self._db.run_checks(run_id)
        return {**public_run(row), "checks": jsonable(checks)}

    async def run_logs(self, run_id: str) -> list[dict[str, Any]] | None:
        if await self._db.get_run(run_id) is None:
            return None
        return jsonable(await self._db.get_logs(run_id))  # type: ignore[no-any-return]

    async def list_tables(self) -> list[dict[str, Any]]:
        return jsonable(await self._db.list_tables())  # type: ignore[no-any-return]

    async def preview_table(self, name: str, limit: int = 50) -> dict[str, Any]:
        return jsonable(await self._db.preview_table(name, limit))  # type: ignore[no-any-return]

    # -- test reads (POST /api/jobs/{name}/preview, POST /api/preview) ----------------------

    async def preview_job(self, name: str, pages: int, records: int) -> dict[str, Any]:
        """A test read of the stored job `name` (JobNotFound); writes nothing."""
        row = await self._db.get_job(name)
        if row is None:
            raise JobNotFound(name)
        spec = parse_job(row["spec"], f"job {name}")
        return await test_read(spec, self._read_rows, pages=pages, records=records)

    async def preview(
        self, body: dict[str, Any] | str, pages: int = DEFAULT_PAGES, records: int = DEFAULT_SAMPLE
    ) -> dict[str, Any]:
        """A test read of a job body, saved or not (JobValidationError); writes nothing. A
        body naming a stored job reads from that job's committed cursor."""
        spec = parse_job(await self._config.parse(body, None), "job")
        stored = await self._db.get_job(spec.name) is not None
        return await test_read(spec, self._read_rows, pages=pages, records=records, stored=stored)

    async def _read_rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        answer = await self.sql(sql, params, 1000)
        names = [column["name"] for column in answer["columns"]]
        return [dict(zip(names, row, strict=True)) for row in answer["rows"]]

    # -- queries over the live database (POST /api/sql) -------------------------------------

    async def sql(
        self,
        sql: str,
        params: list[Any] | None = None,
        limit: int | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """{columns: [{name, type}], rows, row_count, truncated, elapsed_ms}: see
        interfaces.Database.sql (QueryRefused, QueryFailed, QueryTimeout, TooManyQueries)."""
        return await self._db.sql(sql, params or [], limit, timeout=timeout)

    async def sql_stream(
        self,
        sql: str,
        params: list[Any] | None = None,
        limit: int | None = None,
        *,
        fmt: Format = "arrow",
        timeout: float | None = None,
    ) -> AsyncIterator[bytes]:
        """The whole result (or its first `limit` rows) as the bytes of `fmt` (arrow, csv,
        parquet), batch by batch. The query's error is raised here, before the first byte;
        one that comes later (QueryTimeout) ends the stream short."""
        if fmt == "json":
            raise ValueError("JSON answers are not streamed: use sql()")
        first, batches = await open_batches(
            self._actor(DATABASE), sql, params or [], limit, timeout=timeout, fit=fmt
        )
        return encode(first, batches, fmt)
