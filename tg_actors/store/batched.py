"""Many runs per transaction: start a wave of attempts, commit a wave of small runs.

A trivial run (one page, a few rows) used to cost five transactions and a staging table.
`begin_attempts` starts any number of runs (Begin) with a constant number of statements, and
`commit_runs` writes the one-batch append runs (Commit) that share a target table with one
INSERT and one UPDATE. Both return one result per item, in order: a value, or the exception
object (not raised), so one bad run never fails the others. The records were checked when they
were built (tg_actors/attempts.py): nothing here checks their fields again. A commit that
cannot join a group goes through writes.commit_run on its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from tg_actors.attempts import Begin, Begun, Commit, Resume
from tg_actors.errors import DestinationError, IllegalTransition, RunNotFound, StaleAttempt
from tg_actors.jobs import SchemaContract, WriteMode
from tg_actors.runstate import RunState
from tg_actors.store import progress, writes
from tg_actors.store.staging import Staging

_BEGIN = "_tg_begin_runs"
_GROUP = "_tg_group_rows"
_DONE = "_tg_group_done"


# -- begin -------------------------------------------------------------------------------


def begin_attempts(
    con: duckdb.DuckDBPyConnection, begins: list[Begin], engine: str, now: datetime
) -> list[Begun | Exception]:
    """Mark the startable runs `running` (started_at=now, engine) in one transaction; see
    DuckStore.begin_attempts. Four statements whatever the number of runs, plus a DROP and a
    DELETE per leftover staging of a run without checkpoint."""
    if not begins:
        return []
    lookup = pa.table(
        {
            "i": pa.array(range(len(begins)), pa.int64()),
            "run_id": pa.array([b.run_id for b in begins], pa.string()),
            "job": pa.array([b.job for b in begins], pa.string()),
        }
    )
    con.register(_BEGIN, lookup)
    try:
        with writes.transaction(con):
            found = con.execute(
                "SELECT b.i, r.state, r.attempt, c.checkpoint, c.pages, c.rows, s.cursor, r.engine,"
                " r.trigger, r.range_from, r.range_to, s.positions, s.refresh_token,"
                " s.refresh_origin"
                f" FROM {_BEGIN} b LEFT JOIN tg.runs r ON r.run_id = b.run_id"
                " LEFT JOIN tg.run_checkpoints c ON c.run_id = b.run_id"
                " LEFT JOIN tg.state s ON s.job = b.job ORDER BY b.i"
            ).fetchall()
            results = [
                _begin_one(begin, row, engine, now)
                for begin, row in zip(begins, found, strict=True)
            ]
            begun = [(b.run_id, r) for b, r in zip(begins, results, strict=True)]
            good = [run_id for run_id, r in begun if isinstance(r, Begun)]
            if good:
                con.execute(
                    "UPDATE tg.runs SET state = ?, started_at = ?, engine = ?"
                    " WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
                    [RunState.RUNNING, now, engine, good],
                )
            fresh = {run_id for run_id, r in begun if isinstance(r, Begun) and r.resume is None}
            for run_id in sorted(fresh & set(writes.staged_run_ids(con))):  # discard_run's job
                writes.drop_stage(con, run_id)
    finally:
        con.unregister(_BEGIN)
    return results


def _begin_one(begin: Begin, row: tuple[Any, ...], engine: str, now: datetime) -> Begun | Exception:
    """Only a `queued` run starts, or a `running` one this same engine began (its begin
    repeated after a lost answer, or its restarted process taking the run up again): two
    engines never hold one attempt. A re-dispatch always comes with a new attempt number."""
    run_id, attempt = begin.run_id, begin.attempt
    _, state, current, checkpoint, pages, rows, cursor, holder = row[:8]
    trigger, range_from, range_to, positions, refresh_token, refresh_origin = row[8:]
    if state is None:
        return RunNotFound(run_id)
    if attempt is not None and int(current) != attempt:
        return StaleAttempt(run_id, attempt, int(current))
    if state != RunState.QUEUED and not (state == RunState.RUNNING and holder == engine):
        return IllegalTransition(run_id, str(state), RunState.RUNNING.value)
    resume = None
    if checkpoint is not None:  # the same values as progress.load
        resume = Resume(json.loads(checkpoint), int(pages), int(rows))
    stored = str(cursor) if begin.incremental and cursor is not None else None
    span = None if range_from is None or range_to is None else (range_from, range_to)
    kept = (json.loads(positions) if positions else {}) if begin.positioned else None
    rotated = None
    if begin.refresh_token and refresh_token and refresh_origin:
        rotated = (str(refresh_token), str(refresh_origin))
    return Begun(
        resume,
        stored,
        now,
        trigger=str(trigger),
        range=span,
        positions=kept,
        refresh_token=rotated,
    )


# -- group commit ------------------------------------------------------------------------


@dataclass
class _Member:
    index: int
    commit: Commit
    batch: pa.Table  # typed: no all-null column


@dataclass
class _Group:
    table: str
    widen: bool
    members: list[_Member] = field(default_factory=list)


class _Pending:
    """Groups not yet written, at most one per table. They are written before any later item
    that could interact with them (same table with other settings, same run, same cursor
    job), so that the outcome equals committing every item in list order."""

    def __init__(self, write: Callable[[_Group], None]) -> None:
        self._write = write
        self._groups: dict[str, _Group] = {}  # lower(table) -> group
        self._runs: set[str] = set()
        self._jobs: dict[str, str] = {}  # cursor job -> lower(table) of its group

    def add(self, member: _Member) -> None:
        commit = member.commit
        table, widen = commit.table, commit.widen_to_varchar
        key = table.lower()
        group = self._groups.get(key)
        if (group is not None and (group.table, group.widen) != (table, widen)) or self._shares(
            commit, key
        ):
            self.flush()
            group = None
        if group is None:
            group = self._groups[key] = _Group(table, widen)
        group.members.append(member)
        self._runs.add(commit.run_id)
        if commit.cursor_job is not None:
            self._jobs[commit.cursor_job] = key

    def before_single(self, commit: Commit) -> None:
        """Write the groups a commit made on its own could interact with."""
        if commit.table.lower() in self._groups or self._shares(commit, None):
            self.flush()

    def _shares(self, commit: Commit, key: str | None) -> bool:
        """Whether the commit's run, or its cursor job, is in a pending group (other than `key`)."""
        if commit.run_id in self._runs:
            return True
        job = commit.cursor_job
        return job is not None and job in self._jobs and self._jobs[job] != key

    def flush(self) -> None:
        groups, self._groups = list(self._groups.values()), {}
        self._runs, self._jobs = set(), {}
        for group in groups:
            self._write(group)


def commit_runs(
    con: duckdb.DuckDBPyConnection,
    staging: Staging,
    commits: list[Commit],
    now: datetime,
    clock: Callable[[], datetime] | None = None,
) -> list[int | Exception]:
    """Commit each as writes.commit_run would, in list order; see DuckStore.commit_runs.
    Append commits with a batch and no staging go in groups, one transaction per target table.
    `clock`: a run committed on its own is `finished_at` when its rows are written."""
    results: list[int | Exception] = [0] * len(commits)

    def write(group: _Group) -> None:
        try:
            outcome = _commit_group(con, group, now)
        except Exception:  # rolled back: one by one, so one bad run cannot fail the others
            outcome = [_one(con, staging, m.commit, now, clock) for m in group.members]
        for member, result in zip(group.members, outcome, strict=True):
            results[member.index] = result

    pending = _Pending(write)
    staged = set(writes.staged_run_ids(con))
    for index, commit in enumerate(commits):
        batch = _groupable(commit, staged)
        if batch is None:
            pending.before_single(commit)
            results[index] = _one(con, staging, commit, now, clock)
        else:
            pending.add(_Member(index, commit, batch))
    pending.flush()
    return results


def _one(
    con: duckdb.DuckDBPyConnection,
    staging: Staging,
    commit: Commit,
    now: datetime,
    clock: Callable[[], datetime] | None,
) -> int | Exception:
    try:
        return writes.commit_run(con, staging, commit, now, clock=clock)
    except Exception as exc:
        return exc


def _groupable(commit: Commit, staged: set[str]) -> pa.Table | None:
    """The commit's typed batch when it can join a group commit, else None (one by one): it
    has a batch, no staging, appends, and its batch has a typed column (or no rows)."""
    if commit.batch is None or commit.run_id in staged or commit.write is not WriteMode.APPEND:
        return None
    if commit.positions or commit.reset_state or commit.skipped_requests:  # one by one
        return None
    if commit.checks or commit.schema_contract is not SchemaContract.EVOLVE:  # one by one
        return None
    try:
        typed = writes.typed_batch(commit.run_id, commit.batch)
    except DestinationError:  # a reserved column name: commit_run raises it for this one alone
        return None
    if typed.num_rows and not typed.num_columns:  # "no typed column": commit_run's error
        return None
    return typed


def _commit_group(
    con: duckdb.DuckDBPyConnection, group: _Group, now: datetime
) -> list[int | Exception]:
    """One transaction: check the runs, one INSERT of all their rows, cursors, one UPDATE."""
    ids = [m.commit.run_id for m in group.members]
    with writes.transaction(con):
        found = con.execute(
            "SELECT r.run_id, r.state, r.rows_loaded, r.attempt, c.run_id IS NOT NULL"
            " FROM tg.runs r LEFT JOIN tg.run_checkpoints c ON c.run_id = r.run_id"
            " WHERE r.run_id IN (SELECT unnest(?::VARCHAR[]))",
            [ids],
        ).fetchall()
        runs = {str(row[0]): row[1:4] for row in found}
        checkpointed = {str(row[0]) for row in found if row[4]}
        outcome = [
            _group_check(m, runs.get(run_id)) for m, run_id in zip(group.members, ids, strict=True)
        ]
        writing = [m for m, r in zip(group.members, outcome, strict=True) if r is None]
        _insert(con, group, [m.batch for m in writing if m.batch.num_rows])
        cursors = [(c[0], c[1], m.commit.run_id) for m in writing if (c := m.commit.cursor)]
        progress.write_cursors(con, cursors, now)  # forward-only, in item order
        _mark_succeeded(con, writing, now)
        tidy = [
            i
            for i, r in zip(ids, outcome, strict=True)
            if i in checkpointed and not isinstance(r, Exception)
        ]
        if tidy:  # most small runs never saved a checkpoint: no DELETE for them
            con.execute(
                "DELETE FROM tg.run_checkpoints WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
                [tidy],
            )
    return [
        int(m.batch.num_rows) if r is None else r
        for m, r in zip(group.members, outcome, strict=True)
    ]


def _group_check(member: _Member, row: tuple[Any, ...] | None) -> int | Exception | None:
    """None: commit the member; rows_loaded of a run already succeeded; or its error."""
    run_id = member.commit.run_id
    if row is None:
        return RunNotFound(run_id)
    state, loaded, current = str(row[0]), int(row[1]), int(row[2])
    problem = writes.commit_problem(run_id, state, current, member.commit.attempt)
    if problem is not None:
        return problem
    return loaded if state == RunState.SUCCEEDED else None


def _insert(con: duckdb.DuckDBPyConnection, group: _Group, batches: list[pa.Table]) -> None:
    """Append the batches to the target in one INSERT; ValueError when they cannot share one
    (their columns differ in type or in the case of a name): then the group goes one by one."""
    if not batches:
        return
    seen: dict[str, pa.Field] = {}
    for batch in batches:
        for f in batch.schema:
            first = seen.setdefault(f.name.lower(), f)
            if first.name != f.name or first.type != f.type:  # one by one evolves in order
                raise ValueError(f"column {f.name!r} differs between the runs")
    rows = pa.concat_tables(batches, promote_options="permissive")
    con.register(_GROUP, writes.with_seq(rows, 0))
    try:
        mode = WriteMode.APPEND
        writes.write_rows(con, _GROUP, int(rows.num_rows), group.table, mode, [], group.widen)
    finally:
        con.unregister(_GROUP)


def _mark_succeeded(con: duckdb.DuckDBPyConnection, writing: list[_Member], now: datetime) -> None:
    if not writing:
        return
    done = pa.table(
        {
            "run_id": pa.array([m.commit.run_id for m in writing], pa.string()),
            "rows_loaded": pa.array([m.batch.num_rows for m in writing], pa.int64()),
            "pages": pa.array([m.commit.pages for m in writing], pa.int32()),
        }
    )
    if len(writing) == 1:  # a point update is 3x cheaper than the join for one run
        m = writing[0]
        con.execute(
            "UPDATE tg.runs SET state = ?, finished_at = ?, rows_loaded = ?, pages = ?"
            " WHERE run_id = ?",
            [RunState.SUCCEEDED, now, m.batch.num_rows, m.commit.pages, m.commit.run_id],
        )
        return
    con.register(_DONE, done)
    try:
        con.execute(
            "UPDATE tg.runs SET state = ?, finished_at = ?,"
            f" rows_loaded = d.rows_loaded, pages = d.pages FROM {_DONE} d"
            " WHERE tg.runs.run_id = d.run_id",
            [RunState.SUCCEEDED, now],
        )
    finally:
        con.unregister(_DONE)
