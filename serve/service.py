"""The API layer: what routes and the UI may do, over the actors' handles.

Routes and the Gradio UI both call this class; neither talks to actors directly, so the UI
sees exactly what the API returns (secrets masked).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import orjson
import ray
from ray.exceptions import RayTaskError

from serve.cache import TtlCache
from serve.events import EventHub
from tg_actors.metrics import render
from tg_actors.names import BROKER, CONFIG, DATABASE, POOL, SCHEDULER
from tg_actors.runstate import RunState
from tg_actors.store.schema import RUN_FIELDS, jsonable

BOOT_WAIT_S = 2.0  # how long health waits on one actor's start() before saying "starting"


def unwrap(exc: BaseException) -> BaseException:
    """The error an actor raised, out of Ray's wrapper."""
    return exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc


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

    def _lookup(self, name: str) -> Any:
        """The named actor's handle; ValueError when there is none."""
        return ray.get_actor(name, namespace=self.namespace)

    def _actor(self, name: str) -> Any:
        if name not in self._handles:
            self._handles[name] = self._lookup(name)
        return self._handles[name]

    async def _call(self, actor: str, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self._actor(actor), method).remote(*args, **kwargs)
        except RayTaskError as exc:
            raise unwrap(exc) from None

    # -- health -----------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """{"status": "ok" | "starting" | "degraded", "components": {name: "alive" |
        "starting" | "dead"}}. "ok" only once every actor has booted (its `start()` has
        returned) and the Scheduler has engine slots: a run triggered now would be taken.
        Until then "starting"; after, a component down makes it "degraded"."""
        checks = {
            "broker": self._booted(BROKER, "ping"),
            "database": self._booted(DATABASE, "start"),
            "config_manager": self._booted(CONFIG, "ping"),
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

    async def _booted(self, name: str, method: str = "start") -> str:
        """The actor's state: "alive" once its `method` answers, "starting" while it does
        not exist yet or its boot has not finished, "dead" when the call fails."""
        try:
            handle = self._actor(name)
        except ValueError:  # not made yet (start-up), or gone
            return "dead" if self._ready else "starting"
        state, _ = await self._answer(handle, method)
        if state == "dead":
            self._handles.pop(name, None)
        return state

    async def _answer(self, handle: Any, method: str) -> tuple[str, Any]:
        try:
            answer = await asyncio.wait_for(getattr(handle, method).remote(), self.boot_wait)
        except TimeoutError:
            return "starting", None
        except Exception:
            return "dead", None
        return "alive", answer

    async def _scheduler_ready(self) -> str:
        state = await self._booted(SCHEDULER, "start")
        if state != "alive":
            return state
        state, status = await self._answer(self._actor(SCHEDULER), "status")
        if state != "alive":
            return state
        return "alive" if status["slots"] > 0 else "starting"  # no engine slots: nothing taken

    async def _engines_ready(self) -> str:
        state = await self._booted(POOL, "ping")
        if state != "alive":
            return state
        state, names = await self._answer(self._actor(POOL), "names")
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
        state, _ = await self._answer(handle, "start")
        return state

    # -- jobs -------------------------------------------------------------------------------

    async def list_jobs(self) -> list[dict[str, Any]]:
        jobs, status, last = await asyncio.gather(
            self._call(CONFIG, "list"),
            self._call(SCHEDULER, "job_status"),
            self._call(DATABASE, "last_runs"),  # one query, not one per job
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
        job = await self._call(CONFIG, "get", name)
        status = (await self._call(SCHEDULER, "job_status")).get(name, {})
        runs = await self._call(DATABASE, "list_runs", job=name, limit=1)
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

        job = await self._call(CONFIG, "get", name)
        spec = {k: v for k, v in job.items() if k not in ("paused", "origin")}
        return str(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))

    async def validate_job(
        self, body: dict[str, Any] | str, name: str | None = None
    ) -> dict[str, Any]:
        """The job as it would be stored (secrets masked); JobValidationError; stores nothing."""
        return dict(await self._call(CONFIG, "validate", body, name))

    async def run_stats(self, days: int = 7) -> dict[str, Any]:
        """For the UI's charts: runs by state, and rows loaded per succeeded run over time."""
        counts = await self._call(DATABASE, "run_counts")
        rows = await self._call(
            DATABASE,
            "query",
            "SELECT finished_at, job, rows_loaded FROM tg.runs WHERE state = ?"
            " AND finished_at >= now() - to_days(?) ORDER BY finished_at DESC LIMIT 5000",
            [RunState.SUCCEEDED, days],
        )
        loaded = [
            {"finished_at": ts.isoformat(), "job": job, "rows": int(n)} for ts, job, n in rows
        ]
        return {"by_state": dict(counts), "loaded": loaded[::-1]}

    async def put_job(self, name: str, body: dict[str, Any] | str) -> tuple[bool, dict[str, Any]]:
        self.lists.clear()
        result = await self._call(CONFIG, "upsert", body, name)
        return bool(result["created"]), await self.get_job(name)

    async def delete_job(self, name: str) -> None:
        self.lists.clear()
        await self._call(CONFIG, "delete", name)

    async def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        self.lists.clear()
        await self._call(CONFIG, "set_paused", name, paused)
        return dict((await self.get_job(name))["status"]) | {"name": name}

    async def trigger(self, name: str, priority: int | None = None) -> str:
        self.lists.clear()
        return str(await self._call(SCHEDULER, "trigger", name, priority))

    async def cancel(self, run_id: str) -> str:
        """RunNotFound (404) or IllegalTransition (409, the run already ended)."""
        self.lists.clear()
        return str(await self._call(SCHEDULER, "cancel", run_id))

    # -- engines ----------------------------------------------------------------------------

    async def engines(self) -> dict[str, Any]:
        """The engines, where they run and what they hold; the Scheduler's capacity."""
        engines, sched = await asyncio.gather(
            self._call(POOL, "describe"), self._call(SCHEDULER, "status")
        )
        return {
            "count": len(engines),
            "capacity": sched["slots"],
            "running": sched["running"],
            "queue_depth": sched["queue_depth"],
            "nodes": len({e["node_id"] for e in engines if e.get("node_id")}),
            "engines": [_public_engine(e) for e in engines],
        }

    async def scale_engines(self, count: int, grace: float | None = None) -> dict[str, Any]:
        """Add or remove engines without stopping anything (see EnginePool.scale)."""
        outcome = await self._call(POOL, "scale", count, grace)
        changes = {k: outcome[k] for k in ("added", "removed", "interrupted")}
        return {**(await self.engines()), **changes}

    async def metrics(self) -> str:
        """Prometheus text: runs by state, rows loaded, queue depth, engines, trigger lateness."""
        sched = await self._call(SCHEDULER, "metrics")
        counts = await self._call(DATABASE, "run_counts")
        rows = await self._call(
            DATABASE, "query", "SELECT coalesce(sum(rows_loaded), 0) FROM tg.runs"
        )
        busy, slots = sched["running"], sched["slots"]
        return render(
            gauges={
                "tg_queue_depth": ("Runs queued and waiting for an engine.", sched["queue_depth"]),
                "tg_retry_waiting": ("Runs waiting out a retry backoff.", sched["retry_waiting"]),
                "tg_engines": ("SyncEngine actors.", sched["engines"]),
                "tg_engine_slots": ("Runs the engines can work on at once.", slots),
                "tg_runs_in_flight": ("Runs handed to an engine and not ended.", busy),
                "tg_engine_utilisation": (
                    "Runs in flight / engine slots.",
                    busy / slots if slots else 0,
                ),
                "tg_jobs": ("Jobs known to the scheduler.", sched["jobs"]),
            },
            labelled={"tg_runs": ("Runs by state.", "state", counts)},
            histograms={
                "tg_trigger_lateness_seconds": (
                    "Run start minus its scheduled time (since the scheduler started).",
                    sched["lateness"],
                )
            },
            counters={"tg_rows_loaded_total": ("Rows committed by succeeded runs.", rows[0][0])},
        )

    # -- runs, tables -----------------------------------------------------------------------

    async def list_runs(
        self, job: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        rows = await self._call(DATABASE, "list_runs", job=job, state=state, limit=limit)
        return [public_run(r) for r in rows]

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        row = await self._call(DATABASE, "get_run", run_id)
        return public_run(row) if row else None

    async def run_logs(self, run_id: str) -> list[dict[str, Any]] | None:
        if await self._call(DATABASE, "get_run", run_id) is None:
            return None
        return jsonable(await self._call(DATABASE, "get_logs", run_id))  # type: ignore[no-any-return]

    async def list_tables(self) -> list[dict[str, Any]]:
        return jsonable(await self._call(DATABASE, "list_tables"))  # type: ignore[no-any-return]

    async def preview_table(self, name: str, limit: int = 50) -> dict[str, Any]:
        return jsonable(await self._call(DATABASE, "preview_table", name, limit))  # type: ignore[no-any-return]
