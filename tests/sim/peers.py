"""Simulated peers of the real Scheduler: the Database's process (faults around the real
DuckStore), the broker (loss, duplication, reordering, restarts) and the engines (the engine
protocol against the real DuckStore: begin, stage with checkpoints, commit, events).

Everything is driven by the World's one seeded RNG and stepped clock; nothing here sleeps or
spawns a task, so a seed replays the same trace.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from ray.exceptions import RayActorError

from tests.kit.stepclock import SteppedClock
from tg_actors.attempts import Begin, Commit
from tg_actors.errors import IllegalTransition, StaleAttempt
from tg_actors.jobs import WriteMode
from tg_actors.messages import (
    TOPIC_CONTROL,
    TOPIC_STATUS,
    TOPIC_TRIGGERS,
    CancelRun,
    RunCancelled,
    RunFailed,
    RunFinished,
    RunHeartbeat,
    RunStarted,
    TriggerRun,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROWS_PER_PAGE = 3
WORK_GROUP = "engines"


class SimDown(RayActorError):
    """What a caller sees while a peer's process is down (Ray's RayActorError family)."""


class SimClock(SteppedClock):
    """Wall time and monotonic time advance together, only when the World steps them."""

    def __init__(self) -> None:
        super().__init__(T0)


class Method:
    """`handle.name.remote(...)` as Ray gives it: an awaitable, here with injected faults."""

    def __init__(self, call: Callable[..., Any], proc: Process, name: str) -> None:
        self._call, self._proc, self._name = call, proc, name

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._proc.invoke(self._name, self._call, args, kwargs)


class Handle:
    """An actor handle over a plain object, calls going through its simulated process."""

    def __init__(self, target: Any, proc: Process) -> None:
        self._target, self._proc = target, proc

    def __getattr__(self, name: str) -> Method:
        return Method(getattr(self._target, name), self._proc, name)


# DuckStore methods that only read: a call of any other one may have changed DuckDB
READS = frozenset(
    "get_job get_jobs list_jobs job_versions get_run list_runs open_runs watermark watermarks"
    " missing_dependents"
    " last_tick last_runs run_counts get_logs checkpoint staged_rows staged_run_ids cursor"
    " list_tables preview_table".split()
)


class Process:
    """A peer's process: down for a while (calls raise before running), or a call's reply lost
    after it ran (the caller sees an error, the effect happened)."""

    def __init__(self, name: str, world: Any, lost_reply: float) -> None:
        self.name = name
        self.world = world
        self.down_until = -1.0
        self.lost_reply = lost_reply
        self.calls = 0
        self.writes = 0  # calls that may have written: the checks re-read DuckDB after one

    @property
    def down(self) -> bool:
        return self.world.clock.seconds < self.down_until

    async def invoke(
        self, name: str, call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        self.calls += 1
        if self.down:
            raise SimDown(f"{self.name} is down ({name})")
        if name not in READS:
            self.writes += 1
        result = call(*args, **kwargs)
        if hasattr(result, "__await__"):
            result = await result
        if self.world.faults and self.world.rng.random() < self.lost_reply:
            self.world.trace(f"{self.name}.{name}: ran, reply lost")
            raise SimDown(f"{self.name}: reply of {name} lost")
        return result


class SimBroker:
    """Topics with consumer groups, as the Broker actor keeps them, with faults on delivery."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.groups: dict[tuple[str, str], deque[Any]] = {}
        self.loss = self.dup = self.reorder = 0.0

    def restart(self) -> None:
        self.groups.clear()  # in memory only: every topic and group is gone

    async def subscribe(
        self, topic: str, group: str, *, shared: bool = False, lossy: bool = False
    ) -> None:
        self.groups.setdefault((topic, group), deque())

    async def unsubscribe(self, topic: str, group: str) -> None:
        self.groups.pop((topic, group), None)

    async def publish(self, topic: str, messages: list[Any]) -> int:
        rng, faulty = self.world.rng, self.world.faults
        targets = [q for (t, _), q in self.groups.items() if t == topic]
        for queue in targets:
            for message in messages:
                if faulty and rng.random() < self.loss:
                    continue
                copies = 2 if faulty and rng.random() < self.dup else 1
                for _ in range(copies):
                    queue.append(message)
                    if faulty and len(queue) > 1 and rng.random() < self.reorder:
                        queue[-1], queue[-2] = queue[-2], queue[-1]
        return len(targets)

    async def consume(
        self, topic: str, group: str, max_items: int = 100, timeout: float = 1.0
    ) -> list[Any]:
        queue = self.groups.setdefault((topic, group), deque())  # a consume re-creates it
        out = []
        while queue and len(out) < max_items:
            out.append(queue.popleft())
        return out


@dataclass
class Attempt:
    message: TriggerRun
    pages: int  # pages the job has
    phase: str = "begin"  # begin -> stage -> commit -> report
    page: int = 0  # pages staged so far
    cursor: int = 0
    outcome: str = ""  # the event still to publish, when the phase is report
    event: Any = None


@dataclass
class SimEngine:
    """One engine id; `incarnation` counts its processes (a crash and restart is a new one)."""

    id: str
    world: Any
    slots: int = 2
    alive: bool = True
    incarnation: int = 0
    attempts: dict[str, Attempt] = field(default_factory=dict)
    last_beat: float = 0.0
    stats_fail: float = 0.0

    async def stats(self) -> dict[str, Any]:
        if not self.alive or self.world.rng.random() < self.stats_fail:
            raise TimeoutError(f"{self.id}: stats() timed out")
        return {
            "engine": self.id,
            "current_runs": {r: a.message.job for r, a in self.attempts.items()},
        }

    # -- the engine protocol, one await per step ----------------------------------------

    async def take(self) -> None:
        free = self.slots - len(self.attempts)
        if free <= 0:
            return
        taken = await self.world.broker_call("consume", TOPIC_TRIGGERS, WORK_GROUP, free)
        for message in taken:
            if message.run_id in self.attempts and self.world.engine_dedupes:
                self.world.trace(f"{self.id}: duplicate trigger {message.run_id} dropped")
                continue
            job = self.world.jobs_by_name.get(message.job)
            pages = job.pages if job else 1
            self.attempts[message.run_id] = Attempt(message, pages)
            self.world.trace(f"{self.id}: took {message.run_id}/{message.attempt}")

    async def control(self) -> None:
        for message in await self.world.broker_call(
            "consume", TOPIC_CONTROL, f"engine:{self.id}", 50
        ):
            if isinstance(message, CancelRun) and message.run_id in self.attempts:
                attempt = self.attempts.pop(message.run_id)
                self.world.trace(f"{self.id}: cancel {message.run_id}")
                await self.world.db_call("discard_run", message.run_id)
                await self.publish(RunCancelled(**self._ids(attempt)))

    def _ids(self, attempt: Attempt) -> dict[str, Any]:
        m = attempt.message
        ids: dict[str, Any] = {"run_id": m.run_id, "job": m.job}
        if self.world.events_carry_attempt:
            ids["attempt"] = m.attempt
        return ids

    async def publish(self, *messages: Any) -> None:
        try:
            await self.world.broker_call("publish", TOPIC_STATUS, list(messages))
        except SimDown:  # the real engine retries for 30 s, then the event is lost
            self.world.trace(f"{self.id}: {len(messages)} event(s) lost, broker down")

    async def heartbeat(self) -> None:
        if self.attempts:
            await self.publish(
                *(
                    RunHeartbeat(**self._ids(a), engine=self.id)
                    for a in self.attempts.values()
                    if a.phase != "begin"
                )
            )

    async def advance(self, rng: random.Random) -> None:
        """One await of one attempt: begin, stage a page, commit, or publish its outcome."""
        run_id = rng.choice(sorted(self.attempts))
        attempt = self.attempts[run_id]
        m = attempt.message
        try:
            if attempt.phase == "begin":
                await self._begin(attempt)
            elif attempt.phase == "stage":
                if rng.random() < self.world.source_failure:
                    raise RuntimeError("source error: 500 after 5 tries")
                await self._stage(attempt)
            elif attempt.phase == "commit":
                await self._commit(attempt)
            else:
                self.attempts.pop(run_id, None)
                await self.publish(attempt.event)
                self.world.trace(f"{self.id}: reported {attempt.outcome} of {run_id}/{m.attempt}")
        except StaleAttempt as exc:
            self.attempts.pop(run_id, None)
            self.world.trace(f"{self.id}: {run_id}/{m.attempt} stale ({exc}): dropped")
        except IllegalTransition as exc:
            self.attempts.pop(run_id, None)
            self.world.trace(f"{self.id}: {run_id}/{m.attempt} refused ({exc})")
            await self.publish(RunCancelled(**self._ids(attempt)))
        except Exception as exc:  # the real engine: RunFailed, staging kept for a retry
            self.attempts.pop(run_id, None)
            self.world.trace(f"{self.id}: {run_id}/{m.attempt} failed: {exc}")
            await self.publish(RunFailed(**self._ids(attempt), error=str(exc), pages=attempt.page))

    async def _begin(self, attempt: Attempt) -> None:
        m = attempt.message
        begin = Begin(m.run_id, job=m.job, attempt=m.attempt, incremental=True)
        (begun,) = await self.world.db_call("begin_attempts", [begin], self.id)
        if isinstance(begun, Exception):
            raise begun
        attempt.page = begun.resume.pages if begun.resume else 0
        attempt.cursor = self.world.next_cursor()
        self.world.began(m.run_id, m.attempt, self.id, self.incarnation, attempt.cursor)
        attempt.phase = "stage" if attempt.page < attempt.pages - 1 else "commit"
        self.world.trace(f"{self.id}: began {m.run_id}/{m.attempt} from page {attempt.page}")
        await self.publish(RunStarted(**self._ids(attempt), engine=self.id, ts=begun.started_at))

    def _rows(self, attempt: Attempt, page: int) -> pa.Table:
        m = attempt.message
        return pa.table(
            {
                "run_id": pa.array([m.run_id] * ROWS_PER_PAGE, pa.string()),
                "attempt": pa.array([m.attempt] * ROWS_PER_PAGE, pa.int64()),
                "page": pa.array([page] * ROWS_PER_PAGE, pa.int64()),
                "i": pa.array(range(ROWS_PER_PAGE), pa.int64()),
            }
        )

    async def _stage(self, attempt: Attempt) -> None:
        m = attempt.message
        page = attempt.page
        await self.world.db_call(
            "stage_batch",
            m.run_id,
            self._rows(attempt, page),
            checkpoint={"page": page + 1},
            pages=page + 1,
            destination=f"sim_{m.job}",
            attempt=m.attempt,
        )
        attempt.page = page + 1
        self.world.trace(f"{self.id}: staged {m.run_id}/{m.attempt} page {page}")
        if attempt.page >= attempt.pages - 1:
            attempt.phase = "commit"

    async def _commit(self, attempt: Attempt) -> None:
        m = attempt.message
        commit = Commit(
            m.run_id,
            table=f"sim_{m.job}",
            write=WriteMode.APPEND,
            pages=attempt.pages,
            cursor=(m.job, str(attempt.cursor)),
            attempt=m.attempt,
            batch=self._rows(attempt, attempt.pages - 1),  # the last page: the tail
        )
        (rows,) = await self.world.db_call("commit_runs", [commit])
        if isinstance(rows, Exception):
            raise rows
        attempt.phase = "report"
        attempt.outcome = "finished"
        attempt.event = RunFinished(
            **self._ids(attempt), rows=rows, pages=attempt.pages, seconds=1.0
        )
        self.world.trace(f"{self.id}: committed {m.run_id}/{m.attempt}: {rows} rows")
