"""The exactly-once data path: stage a run's batches, then commit them in one transaction.

A run's batches are staged as Arrow IPC files (staging.py), listed in `tg.staged_batches`, so
memory stays bounded and nothing reaches the data tables before the run succeeds; its 0-row
table `tg."stage_<run_id>"` carries the columns evolved so far. `commit_run` writes the staged
rows into `main.<table>` (DuckDB writes each row once), writes the cursor and marks the run
`succeeded` in ONE transaction keyed by run_id: a second commit of the same run finds it
`succeeded` and changes nothing. A run small
enough to fetch in one go skips staging: a Commit with a `batch` writes its one Arrow batch
straight into the target in that same transaction (batched.py commits many such runs at once).

A run's checkpoint (where it resumes) is written in the transaction that stages the batch it
follows, and removed in the one that commits or discards the run (progress.py); the cursor only
moves forward.

Schema evolution (evolve.py): a batch may bring new columns (added to staging and target);
all-null columns (Arrow type `null`) wait until a batch gives them a type; a compatible type
change between batches, or between the run and the target table, widens the column in place;
an incompatible one fails the batch or the commit, unless `widen_to_varchar` turns the column
into VARCHAR.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from tg_actors.attempts import Commit
from tg_actors.errors import (
    ChecksFailed,
    DestinationError,
    IllegalTransition,
    RunNotFound,
    StaleAttempt,
    TGError,
)
from tg_actors.jobs import SchemaContract, WriteMode
from tg_actors.runstate import RunState
from tg_actors.store import checks, contract, progress
from tg_actors.store.evolve import Columns, as_text, evolve, select_list
from tg_actors.store.schema import OPEN_STATES, one, quote
from tg_actors.store.staging import Mapped, Staging

SEQ = "__tg_seq"  # staging order: for merge, the row with the highest SEQ per key wins
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BATCH = "_tg_incoming_batch"  # name the Arrow batch is registered under, connection-local
_COMMIT_BATCH = "_tg_commit_batch"  # the batch commit_run writes directly
_FILES = "_tg_staged_files"  # a run's staged files at commit, registered as _FILES_<i>
_STAGED = "_tg_staged"  # TEMP VIEW: all of a run's staged rows at commit
_PART = "_tg_staged_part"  # one staged file at commit, registered as _PART_<i>
_PIECE = "_tg_staged_piece"  # TEMP VIEW: one part of a run's staged rows at commit
_WINNERS = "_tg_merge_winners"  # TEMP TABLE: SEQ of the last staged row of each key


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN … COMMIT; ROLLBACK on any error (DuckDB aborts the transaction on a failed statement)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:  # none active (a failed COMMIT ends it): keep the first error
            pass
        raise


def stage_table(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id):  # it becomes part of an identifier; we mint uuid hex
        raise RunNotFound(run_id)
    return "tg." + quote(f"stage_{run_id}")


def staged_rows(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Rows staged for the run so far; 0 when nothing is staged."""
    if not _RUN_ID.fullmatch(run_id) or not _exists(con, "tg", f"stage_{run_id}"):
        return 0
    return _staged_count(con, run_id)


def _staged_count(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Rows of a run that has a stage table: in its files, and in the table itself (staged
    before the files existed)."""
    row = one(
        con,
        f"SELECT (SELECT count(*) FROM {stage_table(run_id)})"
        " + (SELECT coalesce(sum(rows), 0) FROM tg.staged_batches WHERE run_id = ?)",
        [run_id],
    )
    return int(row[0]) if row else 0


def staged_run_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
        " AND schema_name = 'tg' AND starts_with(table_name, 'stage_') ORDER BY table_name",
    ).fetchall()
    return [str(name).removeprefix("stage_") for (name,) in rows]


def discard(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Drop the run's staging table and checkpoint, in one transaction."""
    if not _RUN_ID.fullmatch(run_id):  # no other id can have a staging table or checkpoint
        return
    with transaction(con):
        drop_staging(con, run_id)


def drop_staging(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """`discard` inside the caller's transaction."""
    if _RUN_ID.fullmatch(run_id):
        drop_stage(con, run_id)
        progress.forget(con, run_id)


def drop_stage(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Drop the run's stage table and unlist its files (Staging.sweep removes them once the
    caller's transaction has committed); its checkpoint stays."""
    con.execute(f"DROP TABLE IF EXISTS {stage_table(run_id)}")
    con.execute("DELETE FROM tg.staged_batches WHERE run_id = ?", [run_id])


def discard_orphans(con: duckdb.DuckDBPyConnection, open_run_ids: set[str]) -> int:
    """Discard the staging and checkpoints of every run not in `open_run_ids`; runs discarded."""
    listed = con.execute("SELECT DISTINCT run_id FROM tg.staged_batches").fetchall()
    orphans = set(staged_run_ids(con)) | set(progress.run_ids(con)) | {str(r) for (r,) in listed}
    orphans -= open_run_ids
    with transaction(con):
        for run_id in sorted(orphans):
            if _RUN_ID.fullmatch(run_id):
                drop_stage(con, run_id)
            else:
                con.execute("DELETE FROM tg.staged_batches WHERE run_id = ?", [run_id])
            progress.forget(con, run_id)
    return len(orphans)


def save_checkpoint(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    checkpoint: dict[str, Any],
    pages: int,
    now: datetime,
    attempt: int | None = None,
) -> None:
    """Record the run's checkpoint after a page that staged no rows."""
    text = progress.encode(checkpoint, pages)
    assert text is not None
    stage_table(run_id)  # RunNotFound for an id that cannot be a run's
    with transaction(con):
        _require_open(con, run_id, "checkpointed", attempt)
        progress.save(con, run_id, text, pages, staged_rows(con, run_id), now)


def stage_batch(
    con: duckdb.DuckDBPyConnection,
    staging: Staging,
    run_id: str,
    batch: pa.Table | pa.RecordBatch,
    *,
    checkpoint: dict[str, Any] | None,
    pages: int | None,
    widen_to_varchar: bool,
    destination: str | None,
    now: datetime,
    attempt: int | None = None,
) -> int:
    """Stage `batch` as a file of the run's and record the checkpoint, in one transaction.

    The file is written (and fsynced) first; the transaction evolves the run's columns, lists
    the file and saves the checkpoint. If it fails, the file goes and nothing is recorded.
    Returns the rows staged so far.
    """
    stage = stage_table(run_id)
    text = progress.encode(checkpoint, pages)
    _require_open(con, run_id, "staged", attempt)
    batch = typed_batch(run_id, batch)
    existing = _exists(con, "tg", f"stage_{run_id}")
    offset = _staged_count(con, run_id) if existing else 0
    n = int(batch.num_rows)
    total = offset + n
    rows = with_seq(batch, offset)
    con.register(_BATCH, rows)
    where = f"table {destination} (run {run_id})" if destination else f"run {run_id}"
    name = None
    try:
        name = staging.write(run_id, offset, rows) if n else None
        with transaction(con):
            if not existing:  # the run's columns; its rows are in the files
                con.execute(f"CREATE TABLE {stage} AS SELECT * FROM {_BATCH} LIMIT 0")
            else:
                _evolve_stage(con, stage, _BATCH, widen_to_varchar, where)
            if name is not None:
                con.execute(
                    "INSERT INTO tg.staged_batches VALUES (?, ?, ?, ?)", [run_id, offset, n, name]
                )
            if text is not None and pages is not None:
                progress.save(con, run_id, text, pages, total, now)
            else:
                progress.touch_rows(con, run_id, total, now)
    except BaseException as exc:
        if name is not None:
            staging.unlink(name)
        if isinstance(exc, duckdb.Error):
            raise DestinationError(f"{where}: cannot stage batch: {exc}") from exc
        raise
    finally:
        con.unregister(_BATCH)
    return total


def typed_batch(run_id: str, batch: pa.Table | pa.RecordBatch) -> pa.Table:
    """The batch as a Table without its all-null columns; DestinationError on a reserved name."""
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    # a null-typed column carries no type to create; BY NAME fills missing columns with NULL
    keep = [i for i, f in enumerate(batch.schema) if not pa.types.is_null(f.type)]
    batch = batch.select(keep)
    if any(name.lower() == SEQ for name in batch.column_names):
        raise DestinationError(f"run {run_id}: column name {SEQ!r} is reserved")
    return batch


def with_seq(batch: pa.Table, offset: int) -> pa.Table:
    """`batch` with the SEQ column numbering its rows from `offset` (staging order)."""
    seq = pa.array(range(offset, offset + int(batch.num_rows)), type=pa.int64())
    return batch.append_column(SEQ, seq)


def _evolve_stage(
    con: duckdb.DuckDBPyConnection, stage: str, source: str, widen_to_varchar: bool, where: str
) -> None:
    """Evolve the run's stage table to take the columns of `source` (DestinationError when
    one cannot)."""
    evolve(
        con,
        stage,
        _describe(con, stage),
        _describe(con, source),
        widen_to_varchar=widen_to_varchar,
        where=where,
        old_label="in the run's earlier batches",
        new_label="in this batch",
    )


class _Staged:
    """A run's staged rows at its commit: the rows of its stage table, of its files and of the
    commit's batch (registered as _COMMIT_BATCH, `with_batch`), each part cast to the run's
    columns, the stage table's, evolved here to take the batch (DestinationError if not)."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        staging: Staging,
        commit: Commit,
        with_batch: bool,
    ) -> None:
        run_id = commit.run_id
        self._con, self._staging, self.stage = con, staging, stage_table(run_id)
        if with_batch:
            where = f"table {commit.table} (run {run_id})"
            _evolve_stage(con, self.stage, _COMMIT_BATCH, commit.widen_to_varchar, where)
        listed = con.execute(
            "SELECT file, rows FROM tg.staged_batches WHERE run_id = ? ORDER BY first_seq",
            [run_id],
        ).fetchall()
        self._files = [str(file) for file, _ in listed]
        self._extra = _COMMIT_BATCH if with_batch else None
        self.rows = _count(con, self.stage) + sum(int(rows) for _, rows in listed)
        self._columns = _describe(con, self.stage)
        self._registered: list[str] = []
        self._tables: list[Mapped] | None = None
        self._view = False

    def view(self) -> str:
        """The TEMP VIEW _STAGED of every part at once, for a commit that reads the rows more
        than once (checks, a schema contract) and for a merge's pass over its keys."""
        if self._view:
            return _STAGED
        parts, groups = [self.stage], list[pa.Table]()
        for table in (m.table for m in self._mapped()):  # one schema in a row: one table
            if groups and groups[-1].schema.equals(table.schema):
                groups[-1] = pa.concat_tables([groups[-1], table])
            else:
                groups.append(table)
        for i, group in enumerate(groups):
            parts.append(self._register(f"{_FILES}_{i}", group))
        if self._extra is not None:
            parts.append(self._extra)
        selects = [self._select(part) for part in parts]
        self._con.execute(f"CREATE OR REPLACE TEMP VIEW {_STAGED} AS {' UNION ALL '.join(selects)}")
        self._view = True
        return _STAGED

    def pieces(self) -> Iterator[str]:
        """Each part alone, one after the other, as the TEMP VIEW _PIECE, for a commit that
        writes them one by one (append, replace, merge): once a file is written its pages go
        back (Mapped.release), so the Database's memory does not grow with the run."""
        yield self._piece(self.stage)
        for i, mapped in enumerate(self._mapped()):
            yield self._piece(self._register(f"{_PART}_{i}", mapped.table))
            mapped.release()  # DuckDB holds the table until the commit ends
        if self._extra is not None:
            yield self._piece(self._extra)

    def close(self) -> None:
        for mapped in self._tables or []:
            mapped.release()
        self._con.execute(f"DROP VIEW IF EXISTS {_STAGED}")
        self._con.execute(f"DROP VIEW IF EXISTS {_PIECE}")
        for name in self._registered:
            self._con.unregister(name)
        self._registered.clear()

    def _register(self, name: str, table: pa.Table) -> str:
        self._con.register(name, table)
        self._registered.append(name)
        return name

    def _select(self, part: str) -> str:
        return f"SELECT {_cast_list(_describe(self._con, part), self._columns)} FROM {part}"

    def _piece(self, part: str) -> str:
        self._con.execute(f"CREATE OR REPLACE TEMP VIEW {_PIECE} AS {self._select(part)}")
        return _PIECE

    def _mapped(self) -> list[Mapped]:
        """The files' tables, one each, memory-mapped once for the commit."""
        if self._tables is None:
            self._tables = [self._staging.map(name) for name in self._files]
        return self._tables


def _cast_list(have: Columns, columns: Columns) -> str:
    """A SELECT list giving a relation with columns `have` exactly `columns` (the run's,
    evolved from them): cast where the type widened, NULL where the column came later."""
    out = []
    for key, (name, ty) in columns.items():
        found = have.get(key)
        if found is None:
            out.append(f"CAST(NULL AS {ty}) AS {quote(name)}")
        elif found[1] == ty:
            out.append(f"{quote(found[0])} AS {quote(name)}")
        elif str(ty.id) == "varchar":
            out.append(f"{as_text(quote(found[0]), found[1])} AS {quote(name)}")
        else:
            out.append(f"CAST({quote(found[0])} AS {ty}) AS {quote(name)}")
    return ", ".join(out)


def commit_run(
    con: duckdb.DuckDBPyConnection,
    staging: Staging,
    commit: Commit,
    now: datetime,
    crashed: dict[str, str] | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
) -> int:
    """Move the run's rows into `main.<table>`, write the cursor, mark the run succeeded.

    `now` stamps the cursor, state and checks; the run's `finished_at` is `clock()` (when
    given) once the rows are written, so that a run's duration holds its commit's write too.

    The rows are the staged ones, or `commit.batch` when the run staged nothing: then they go
    from the Arrow table straight into the target, with no staging at all. When the run has
    staging too, the batch is read with the staged files, as their last part.
    The schema contract (contract.py) decides what rows that do not fit the table do; the
    checks (checks.py) run after the write, in the same transaction, and a failing `fail`
    check rolls it all back (ChecksFailed; the results are then recorded on their own).
    The Commit was checked when it was built (tg_actors/attempts.py): its table name is valid.
    """
    try:
        return _commit_run(con, staging, commit, now, crashed or {}, clock)
    except checks.CheckCrashed as exc:  # it aborted the transaction: again, recorded as failed
        again = {**(crashed or {}), exc.name: exc.error}
        return commit_run(con, staging, commit, now, again, clock=clock)
    except ChecksFailed as exc:  # rolled back: the results are kept all the same
        with transaction(con):
            checks.record(con, commit.run_id, [checks.CheckResult.of(r) for r in exc.results], now)
        raise


def _commit_run(
    con: duckdb.DuckDBPyConnection,
    staging: Staging,
    commit: Commit,
    now: datetime,
    crashed: dict[str, str],
    clock: Callable[[], datetime] | None,
) -> int:
    run_id, table = commit.run_id, commit.table
    batch, cursor = commit.batch, commit.cursor
    stage_table(run_id)  # RunNotFound for an id that cannot be a run's
    staged = _exists(con, "tg", f"stage_{run_id}")
    incoming = None if batch is None else typed_batch(run_id, batch)
    if incoming is not None:
        offset = _staged_count(con, run_id) if staged else 0
        con.register(_COMMIT_BATCH, with_seq(incoming, offset))
    parts: _Staged | None = None
    try:
        with transaction(con):
            done = _check_commit(con, run_id, commit.attempt)
            if done is not None:  # a retried commit: already done, only tidy up
                _tidy(con, run_id, staged)
                return done
            n = 0 if incoming is None else int(incoming.num_rows)
            source, piecewise = _COMMIT_BATCH, None
            if staged:
                parts = _Staged(con, staging, commit, incoming is not None)
                n += parts.rows
                if _piecewise(commit):  # the stage table gives the columns, the parts the rows
                    source, piecewise = parts.stage, parts
                else:
                    source = parts.view()
            rows, written, fitted = _write(
                con, commit, source, n, staged or incoming is not None, now, piecewise
            )
            if commit.checks:
                _run_checks(con, commit, written, now, crashed)
            contract.drop_fit(con, fitted)
            if commit.reset_state:  # a refresh: the state becomes this run's
                value = None if cursor is None else cursor[1]
                progress.reset_state(con, commit.job, value, commit.positions, run_id, now)
            else:
                if cursor is not None:
                    progress.write_cursor(con, cursor[0], cursor[1], run_id, now)
                if commit.positions:
                    progress.write_positions(con, commit.job, commit.positions, run_id, now)
            con.execute(
                "UPDATE tg.runs SET state = ?, finished_at = ?, rows_loaded = ?,"
                " pages = ?, skipped_requests = ?, rows_discarded = ? WHERE run_id = ?",
                [
                    RunState.SUCCEEDED,
                    now if clock is None else max(now, clock()),
                    rows,
                    commit.pages,
                    commit.skipped_requests,
                    0 if fitted is None else fitted.discarded,
                    run_id,
                ],
            )
            _tidy(con, run_id, staged)
            return rows
    except duckdb.Error as exc:
        raise DestinationError(f"table {table}: {exc}") from exc
    finally:
        if parts is not None:
            parts.close()
        if incoming is not None:
            con.unregister(_COMMIT_BATCH)


def _piecewise(commit: Commit) -> bool:
    """Whether the commit can write the run's rows part by part: with no check and no schema
    contract, which read all the rows written."""
    return not commit.checks and commit.schema_contract is SchemaContract.EVOLVE


def _write(
    con: duckdb.DuckDBPyConnection,
    commit: Commit,
    source: str,
    n: int,
    known: bool,
    now: datetime,
    piecewise: _Staged | None = None,
) -> tuple[int, str | None, contract.Fitted | None]:
    """Write the run's `n` rows of `source` (`known`: it exists, staging or the batch) by the
    schema contract, logging what changed the table; (rows written, the relation they were
    written from, the contract's Fitted). With `piecewise` (no checks, the evolve contract),
    `source` only gives the columns and the rows are written part by part."""
    table, mode, widen_to_varchar = commit.table, commit.write, commit.widen_to_varchar
    if not n:
        if mode is WriteMode.REPLACE:  # the table becomes the run's rows: none
            empty_table(con, source if known else None, table, widen_to_varchar)
            return 0, source if known else None, None
        return 0, None, None
    run_id, target = commit.run_id, "main." + quote(table)
    have = _describe(con, target) if _exists(con, "main", table) else None
    cols = {k: v for k, v in _describe(con, source).items() if k != SEQ}
    fitted = contract.fit(con, source, n, have, cols, commit.schema_contract, table)
    key = list(commit.primary_key)
    rows = write_rows(
        con, fitted.source, fitted.rows, table, mode, key, widen_to_varchar, piecewise=piecewise
    )
    if fitted.note:
        _log(con, run_id, now, "WARNING", f"table {table}: {fitted.note}")
    diff = contract.column_diff(have, _describe(con, target), cols)
    if diff is not None:
        _log(con, run_id, now, "INFO", f"schema change in table {table}: {diff}")
    return rows, fitted.source, fitted


def _run_checks(
    con: duckdb.DuckDBPyConnection,
    commit: Commit,
    written: str | None,
    now: datetime,
    crashed: dict[str, str],
) -> None:
    """Evaluate the commit's checks over the rows written and the table, record them, and
    raise ChecksFailed (rolling the commit back) when a `fail` check did not pass."""
    table = commit.table
    exists = _exists(con, "main", table)
    if written is not None:
        records = f"SELECT * EXCLUDE ({SEQ}) FROM {written}"
    elif exists:  # no rows: the table's columns, none of its rows
        records = f"SELECT * FROM main.{quote(table)} LIMIT 0"
    else:
        records = "SELECT NULL AS no_rows LIMIT 0"
    target = f"SELECT * FROM main.{quote(table)}" if exists else "SELECT * FROM records LIMIT 0"
    results = checks.evaluate(con, commit.checks, records, target, now, crashed)
    checks.record(con, commit.run_id, results, now)
    for result in results:
        if not result.passed and not result.blocking:
            text = f"check {result.name} did not pass (warn): {result.value}"
            _log(con, commit.run_id, now, "WARNING", text)
    if any(result.blocking for result in results):
        raise ChecksFailed(table, [result.to_public() for result in results])


def _log(con: duckdb.DuckDBPyConnection, run_id: str, now: datetime, level: str, text: str) -> None:
    """A line of the run's logs, written in the caller's transaction."""
    con.execute(
        "INSERT INTO tg.run_logs (run_id, ts, level, message) VALUES (?, ?, ?, ?)",
        [run_id, now, level, text],
    )


def _check_commit(con: duckdb.DuckDBPyConnection, run_id: str, attempt: int | None) -> int | None:
    """rows_loaded of a run already succeeded; None for an open run; else raise."""
    row = one(con, "SELECT state, rows_loaded, attempt FROM tg.runs WHERE run_id = ?", [run_id])
    if row is None:
        raise RunNotFound(run_id)
    problem = commit_problem(run_id, str(row[0]), int(row[2]), attempt)
    if problem is not None:
        raise problem
    return int(row[1]) if row[0] == RunState.SUCCEEDED else None


def commit_problem(run_id: str, state: str, current: int, attempt: int | None) -> TGError | None:
    """Why a run in `state` (attempt `current`) cannot be committed by `attempt`, if it can't."""
    if attempt is not None and state != RunState.SUCCEEDED and current != attempt:
        return StaleAttempt(run_id, attempt, current)
    if state != RunState.SUCCEEDED and state not in OPEN_STATES:  # e.g. cancelled meanwhile
        return IllegalTransition(run_id, state, RunState.SUCCEEDED.value)
    return None


def _tidy(con: duckdb.DuckDBPyConnection, run_id: str, staged: bool) -> None:
    if staged:
        drop_stage(con, run_id)
    progress.forget(con, run_id)


def empty_table(
    con: duckdb.DuckDBPyConnection, source: str | None, table: str, widen_to_varchar: bool
) -> None:
    """A `replace` with no rows, inside the commit txn: the target is emptied (it keeps its
    columns). With no target yet it is created empty when `source` (the run's staging or
    batch, 0 rows) gives typed columns; otherwise there is nothing to create."""
    if _exists(con, "main", table):
        con.execute(f"DELETE FROM main.{quote(table)}")
        return
    if source is None or not {k for k in _describe(con, source) if k != SEQ}:
        return
    write_rows(con, source, 0, table, WriteMode.REPLACE, [], widen_to_varchar)


def write_rows(
    con: duckdb.DuckDBPyConnection,
    source: str,
    n: int,
    table: str,
    mode: WriteMode,
    key: list[str],
    widen_to_varchar: bool,
    *,
    piecewise: _Staged | None = None,
) -> int:
    """Apply the `n` rows (> 0, or 0 for `empty_table`) of relation `source` (a staging table or a registered Arrow
    table, with SEQ) to the target; return rows written. Runs inside the commit txn.
    With `piecewise`, the rows are its parts', each with `source`'s columns, written one
    statement a part (a merge first finds the last row of each key over all the parts)."""
    cols = {k: v for k, v in _describe(con, source).items() if k != SEQ}
    if not cols:  # every column was all-null: there is no type to create a table from
        raise DestinationError(f"table {table}: the run's rows have no typed column")
    if mode is WriteMode.MERGE:
        _check_key(con, source if piecewise is None else piecewise.view(), table, cols, key)
    target = "main." + quote(table)
    created = not _exists(con, "main", table)
    if not created:
        have = _describe(con, target)
        into = evolve(
            con,
            target,
            have,
            cols,
            widen_to_varchar=widen_to_varchar,
            where=f"table {table}",
            old_label="in the table",
            new_label="in the new rows",
        )
    else:
        # no PRIMARY KEY constraint, even for merge: MERGE INTO needs none (ON CONFLICT
        # would), and a table first filled by append can later be merged into
        names = ", ".join(quote(name) for name, _ in cols.values())
        con.execute(f"CREATE TABLE {target} AS SELECT {names} FROM {source} LIMIT 0")
        into = cols
    values = select_list(cols, into)  # `expr AS name`: text for a column turned VARCHAR
    if mode is WriteMode.REPLACE:  # truncate-and-insert: keeps the table's columns and types
        con.execute(f"DELETE FROM {target}")
    if mode is not WriteMode.MERGE:
        for piece in [source] if piecewise is None else piecewise.pieces():
            con.execute(f"INSERT INTO {target} BY NAME SELECT {values} FROM {piece}")
        return n
    keys = [cols[k.lower()][0] for k in key]
    on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in keys)
    rest = [name for k, (name, _) in cols.items() if k not in {x.lower() for x in key}]
    matched = (
        "UPDATE SET " + ", ".join(f"{quote(c)} = s.{quote(c)}" for c in rest)
        if rest
        else "DO NOTHING"
    )
    partition = ", ".join(quote(k) for k in keys)
    latest = (
        f"SELECT {values} FROM {source} QUALIFY row_number()"
        f" OVER (PARTITION BY {partition} ORDER BY {SEQ} DESC) = 1"
    )
    # nothing to match (a table's first load, often its biggest): the same rows as the
    # MERGE below would insert, in under half its time (1M rows with a struct and a list)
    insert = created or _empty(con, target)
    if piecewise is None:
        return _merge(con, target, latest, on, matched, insert)
    # part by part, each key from the part that holds its last row: the statements together
    # write what the one MERGE would, and count what it counts
    whole = piecewise.view()  # only the keys and SEQ are read: no column of the rows
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_WINNERS} AS"
        f" SELECT max({SEQ}) AS seq FROM {whole} GROUP BY {partition}"
    )
    rows = 0
    for piece in piecewise.pieces():
        last = f"SELECT {values} FROM {piece} WHERE {SEQ} IN (SELECT seq FROM {_WINNERS})"
        rows += _merge(con, target, last, on, matched, insert)
    con.execute(f"DROP TABLE {_WINNERS}")  # on an error the rollback drops it
    return rows


def _merge(
    con: duckdb.DuckDBPyConnection, target: str, rows: str, on: str, matched: str, insert: bool
) -> int:
    """MERGE the `rows` (a SELECT, one row a key) into `target`, or INSERT them into a target
    known to be empty; rows inserted + updated."""
    if insert:
        result = one(con, f"INSERT INTO {target} BY NAME {rows}")
    else:
        result = one(
            con,
            f"MERGE INTO {target} AS t USING ({rows}) AS s ON ({on})"
            f" WHEN MATCHED THEN {matched} WHEN NOT MATCHED THEN INSERT BY NAME",
        )
    return int(result[0]) if result else 0


def _empty(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return one(con, f"SELECT NOT EXISTS (SELECT 1 FROM {table})") == (True,)


def _check_key(
    con: duckdb.DuckDBPyConnection, source: str, table: str, cols: Columns, key: list[str]
) -> None:
    if not key:
        raise DestinationError(f"table {table}: merge needs a primary_key")
    missing = [k for k in key if k.lower() not in cols]
    if missing:
        raise DestinationError(
            f"table {table}: primary key column(s) {missing} not in the run's columns"
            f" {[name for name, _ in cols.values()]}"
        )
    # a NULL key never matches in MERGE: each run would insert that row again
    nulls = " OR ".join(f"{quote(cols[k.lower()][0])} IS NULL" for k in key)
    (count,) = one(con, f"SELECT count(*) FROM {source} WHERE {nulls}") or (0,)
    if count:
        raise DestinationError(f"table {table}: {count} row(s) of the run have a NULL primary key")


def _describe(con: duckdb.DuckDBPyConnection, relation: str) -> Columns:
    rel = con.sql(f"SELECT * FROM {relation}")  # lazy: binds, reads nothing
    return {name.lower(): (name, ty) for name, ty in zip(rel.columns, rel.types, strict=True)}


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    # identifiers are case-insensitive in DuckDB, quoted or not
    return (
        one(
            con,
            "SELECT 1 FROM duckdb_tables() WHERE database_name = current_database()"
            " AND schema_name = ? AND lower(table_name) = lower(?)",
            [schema, table],
        )
        is not None
    )


def _count(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    row = one(con, f"SELECT count(*) FROM {relation}")
    return int(row[0]) if row else 0


def _require_open(
    con: duckdb.DuckDBPyConnection, run_id: str, target: str, attempt: int | None = None
) -> None:
    row = one(con, "SELECT state, attempt FROM tg.runs WHERE run_id = ?", [run_id])
    if row is None:
        raise RunNotFound(run_id)
    if row[0] not in OPEN_STATES:  # a late batch of a cancelled run must not recreate staging
        raise IllegalTransition(run_id, str(row[0]), target)
    if attempt is not None and int(row[1]) != attempt:  # fencing: a superseded attempt
        raise StaleAttempt(run_id, attempt, int(row[1]))
