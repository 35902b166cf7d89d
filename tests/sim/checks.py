"""The invariants the simulation checks after every step, and once more after it settles.

Read from DuckDB (the arbiter) plus what the World knows happened (which engine process began
which attempt, when a process died, when the job was paused). Each check names the promise of
docs/RELIABILITY.md it stands for.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tg_actors.runstate import TERMINAL, TRANSITIONS, RunState

OPEN = ("queued", "running", "retrying")
MARGIN = timedelta(seconds=20)  # a lease, a reconcile pass and a few turns of the loop


def reachable(a: str, b: str) -> bool:
    """Whether the transition table leads from state a to state b (in one or more moves)."""
    seen, todo = {RunState(a)}, deque([RunState(a)])
    while todo:
        for nxt in TRANSITIONS[todo.popleft()]:
            if nxt == RunState(b):
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


class Violation(AssertionError):
    def __init__(self, world: Any, problems: list[str]) -> None:
        self.world, self.problems = world, problems
        tail = "\n".join(world.lines[-60:])
        super().__init__(
            f"seed {world.seed}, step {world.step_no}: "
            + "; ".join(problems)
            + f"\n--- last steps ---\n{tail}\n--- replay: .venv/bin/python -m tests.sim"
            f" --seed {world.seed} --steps {world.steps} -v"
        )


@dataclass
class Model:
    world: Any
    states: dict[str, tuple[str, int]] = field(default_factory=dict)  # run -> (state, attempt)
    holders: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    cursors: dict[tuple[str, int], int] = field(default_factory=dict)
    deaths: dict[tuple[str, int], float] = field(default_factory=dict)
    sched_up: list[list[float]] = field(default_factory=list)  # [start, end] booted spans
    db_out: list[tuple[float, float]] = field(default_factory=list)
    stalls: list[tuple[float, float]] = field(default_factory=list)
    created_at: datetime | None = None
    paused: bool = False
    pauses: list[list[datetime | None]] = field(default_factory=list)
    deleted_at: datetime | None = None
    best_cursor: dict[str, int] = field(default_factory=dict)
    dirty: bool = True  # rows may have changed since the last check
    _read_at: int = -1  # the Database's write count when tg.runs was last read
    _runs: list[tuple[Any, ...]] = field(default_factory=list)
    _stored: dict[str, Any] = field(default_factory=dict)
    _tables: list[str] = field(default_factory=list)

    # -- what happened ---------------------------------------------------------------------

    def created(self, now: datetime) -> None:
        self.created_at = now

    def began(self, run_id: str, attempt: int, engine: str, inc: int, cursor: int) -> None:
        self.holders[(run_id, attempt)] = (engine, inc)
        self.cursors[(run_id, attempt)] = cursor

    def engine_died(self, engine: str, inc: int, at: float) -> None:
        self.deaths[(engine, inc)] = at

    def scheduler_up(self, at: float) -> None:
        self.sched_up.append([at, float("inf")])

    def scheduler_down(self, at: float) -> None:
        if self.sched_up and self.sched_up[-1][1] == float("inf"):
            self.sched_up[-1][1] = at

    def db_down(self, start: float, end: float) -> None:
        self.db_out.append((start, end))

    def stalled(self, start: float, end: float) -> None:
        self.stalls.append((start, end))

    def pause_changed(self, paused: bool, now: datetime) -> None:
        self.paused = paused
        if paused:
            self.pauses.append([now, None])
        elif self.pauses:
            self.pauses[-1][1] = now

    def trigger_failed(self, job: str) -> None:
        pass  # an error answer may still have created the run: nothing is promised here

    # -- helpers -----------------------------------------------------------------------------

    def _secs(self, t: datetime) -> float:
        return float(self.world.clock.seconds - (self.world.clock.now() - t).total_seconds())

    def healthy(self, start: float, end: float) -> bool:
        """Scheduler booted and the Database up through [start, end]."""
        up = any(s <= start and end <= e for s, e in self.sched_up)
        return up and not any(a < end and start < b for a, b in self.db_out)

    # -- after every step ----------------------------------------------------------------------

    def check(self, now: datetime) -> list[str]:
        con = self.world.store.con
        if self.world.db.writes != self._read_at:  # else DuckDB is as it was at the last read
            self._read_at = self.world.db.writes
            self._runs = con.execute(
                "SELECT run_id, job, state, attempt, trigger, scheduled_for, queued_at,"
                " finished_at, started_at FROM tg.runs"
            ).fetchall()
            self._stored = dict(con.execute("SELECT job, cursor FROM tg.state").fetchall())
        runs = self._runs
        problems: list[str] = []
        problems += self._states(runs)
        if self.dirty:  # data tables change only with a commit
            self.dirty = False
            problems += self._rows(con, runs)
        problems += self._cursor(runs)
        problems += self._zombies(runs, now)
        problems += self._ticks(runs, now)
        problems += self._config(runs, now)
        problems += self._dependents(runs, settled=False)
        seen: dict[tuple[str, datetime], int] = {}
        for run in runs:
            seen[(run[1], run[5])] = seen.get((run[1], run[5]), 0) + 1
        problems += [f"tick ({job}, {at}) has {n} runs" for (job, at), n in seen.items() if n > 1]
        return problems

    def _states(self, runs: list[tuple[Any, ...]]) -> list[str]:
        """States follow the transition table; an ended run never changes; attempts only grow."""
        out = []
        for run_id, _, state, attempt, *_, started_at in runs:
            before = self.states.get(run_id)
            self.states[run_id] = (state, attempt)
            if before is None:
                # born queued or skipped; one created and cancelled within a step (a tick of
                # a job whose delete arrives in that step) is first seen cancelled, unstarted
                unstarted_cancel = state == "cancelled" and started_at is None
                if state not in ("queued", "skipped") and not unstarted_cancel:
                    out.append(f"{run_id} first seen {state}")
                continue
            old, old_attempt = before
            if attempt < old_attempt:
                out.append(f"{run_id}: attempt went back {old_attempt} -> {attempt}")
            if old != state:
                if RunState(old) in TERMINAL:
                    out.append(f"{run_id}: ended {old}, then {state}")
                elif not reachable(old, state):
                    out.append(f"{run_id}: {old} -> {state} is not in the table")
        return out

    def _rows(self, con: Any, runs: list[tuple[Any, ...]]) -> list[str]:
        """Each succeeded run's rows are in its table exactly once; any other run's none."""
        if len(self._tables) < len(self.world.jobs_by_name):  # a table, once made, stays
            self._tables = sorted(
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
                ).fetchall()
            )
        counts: dict[str, tuple[int, int]] = {}
        if self._tables:
            union = " UNION ALL ".join(
                f'SELECT run_id, count(*), count(DISTINCT (page, i)) FROM "{t}" GROUP BY 1'
                for t in self._tables
            )
            for run_id, n, distinct in con.execute(union).fetchall():
                counts[run_id] = (n, distinct)
        out = []
        for run_id, job, state, *_ in runs:
            n, distinct = counts.pop(run_id, (0, 0))
            want = self.world.jobs_by_name[job].pages * 3 if state == "succeeded" else 0
            if n != want or distinct != n:
                out.append(
                    f"{run_id} ({job}, {state}): {n} rows ({distinct} distinct), want {want}"
                )
        out += [f"rows of unknown run {r}" for r in counts]
        return out

    def _cursor(self, runs: list[tuple[Any, ...]]) -> list[str]:
        """The cursor is the newest committed one, and never moves back."""
        out = []
        stored = self._stored
        want: dict[str, int] = {}
        for run_id, job, state, attempt, *_ in runs:
            if state == "succeeded" and (run_id, attempt) in self.cursors:
                want[job] = max(want.get(job, 0), self.cursors[(run_id, attempt)])
        for job, value in want.items():
            have = int(stored[job]) if job in stored else None
            if have != value:
                out.append(f"cursor of {job} is {have}, the newest committed is {value}")
            if have is not None and have < self.best_cursor.get(job, 0):
                out.append(f"cursor of {job} moved back to {have}")
            if have is not None:
                self.best_cursor[job] = max(self.best_cursor.get(job, 0), have)
        return out

    def _zombies(self, runs: list[tuple[Any, ...]], now: datetime) -> list[str]:
        """No run stays `running` longer than a lease after the process that began it died."""
        out = []
        lease = self.world_lease()
        t = self.world.clock.seconds
        for run_id, _, state, attempt, *_ in runs:
            if state != "running":
                continue
            holder = self.holders.get((run_id, attempt))
            if holder is None:
                continue
            died = self.deaths.get(holder)
            if died is None:
                continue
            since = max(died, self._up_since())
            if self.healthy(since, t) and not self._stalled(since, t) and t - since > lease + 15:
                out.append(f"{run_id}/{attempt} running {t - died:.0f}s after {holder} died")
        return out

    def world_lease(self) -> float:
        from tests.sim.world import LEASE_S

        return LEASE_S

    def _up_since(self) -> float:
        return self.sched_up[-1][0] if self.sched_up else float("inf")

    def _stalled(self, start: float, end: float) -> bool:
        return any(a < end and start < b for a, b in self.stalls)

    def _ticks(self, runs: list[tuple[Any, ...]], now: datetime) -> list[str]:
        """Every due tick of `a` (catchup: all) exists once the Scheduler has been healthy for a
        margin; every tick of `c` (catchup: none) that fell while it was up exists too; no
        tick of `p` inside a window where it was paused ran."""
        out = []
        t = self.world.clock.seconds
        m = MARGIN.total_seconds()
        assert self.created_at is not None
        have = {(r[1], r[5]) for r in runs if r[4] in ("schedule", "catchup")}
        for job, every in (("a", 10), ("c", 14)):
            tick = _first_tick(self.created_at, every)
            while self._secs(tick) <= t - m:
                at = self._secs(tick)
                due = (
                    self.healthy(t - m, t)
                    if job == "a"
                    else self.healthy(at - 0.5, at + m) and self.healthy(t - m, t)
                )
                # a stalled Scheduler is up but takes no turn: its late ticks count once it
                # has had a margin of turns again (that they are not dropped then is the point)
                due = due and not self._stalled(t - m, t)
                if due and (job, tick) not in have:
                    out.append(f"tick {job}@{tick:%H:%M:%S} missing")
                tick += timedelta(seconds=every)
        for start, end in self.pauses:
            stop = end or now
            for job, at in have:
                if job == "p" and start + MARGIN < at < stop:
                    out.append(f"p ran tick {at:%H:%M:%S} while paused ({start:%H:%M:%S}-)")
        return out

    def _config(self, runs: list[tuple[Any, ...]], now: datetime) -> list[str]:
        """A deleted job fires no more (once the Scheduler has had a margin to hear of it)."""
        if self.deleted_at is None:
            return []
        late = [r[0] for r in runs if r[1] == "e" and r[6] > self.deleted_at + MARGIN]
        return [f"deleted job e got run {r}" for r in late]

    def _dependents(
        self, runs: list[tuple[Any, ...]], *, settled: bool, now: datetime | None = None
    ) -> list[str]:
        """Each success of `a` fires `b` (after: [a]) exactly once: b's run of a success is
        scheduled_for the success's finished_at (RELIABILITY.md), so a run of b after:a that
        matches no success of `a` is a phantom or a double, and once everything has settled
        a success older than a margin without its run of b was lost."""
        ups = {r[7] for r in runs if r[1] == "a" and r[2] == "succeeded"}
        downs = [r[5] for r in runs if r[1] == "b" and r[4] == "after:a"]
        out = [
            f"run of b after:a at {at:%H:%M:%S.%f} matches no success of a"
            for at in downs
            if at not in ups
        ]
        if settled and now is not None:
            fired = set(downs)
            out += [
                f"success of a at {at:%H:%M:%S.%f} fired no run of b after:a"
                for at in sorted(ups)
                if at < now - MARGIN and at not in fired
            ]
        return out

    # -- once settled ------------------------------------------------------------------------

    def check_settled(self, now: datetime, healed: datetime) -> list[str]:
        con = self.world.store.con
        runs = con.execute(
            "SELECT run_id, job, state, attempt, trigger, scheduled_for, queued_at, finished_at"
            " FROM tg.runs"
        ).fetchall()
        problems = self._dependents(runs, settled=True, now=now)
        if not self.world.sched_booted:
            problems.append("the Scheduler never booted again after the faults healed")
        for job in ("a", "b", "c"):  # liveness: with every fault healed, work gets done
            done = [r for r in runs if r[1] == job and r[2] == "succeeded" and r[7] >= healed]
            if not done:
                problems.append(f"no run of {job} succeeded after the faults healed")
        stuck = [
            f"{r[0]} ({r[1]}) still {r[2]} since before the faults healed"
            for r in runs
            if r[2] in OPEN and r[6] < healed - MARGIN
        ]
        return problems + stuck


def _first_tick(after: datetime, every: int) -> datetime:
    epoch = datetime(1970, 1, 1, tzinfo=after.tzinfo)
    k = int((after - epoch).total_seconds() // every) + 1
    return epoch + timedelta(seconds=k * every)
