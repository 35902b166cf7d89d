"""What an attempt asks of the Database, once: `Begin` -> `Begun`, then `Commit` -> rows.

The engine builds a Begin and a Commit from its TriggerRun and JobSpec; each is checked here,
once, at construction (STYLE 6: normalise at the edge, then trust): `write` becomes a
WriteMode, `primary_key` a tuple, a bad field raises ValueError or TypeError naming it. The
Database actor, DuckStore and the group commit (store/batched.py) read the typed attributes
and check nothing again. Frozen and slotted: what reaches the Database (pickled by Ray, which
does not run __post_init__ again) is what was checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from typing import Any, NoReturn

import pyarrow as pa

from tg_actors.jobs import TABLE_NAME, AnyCheck, ExportFormat, SchemaContract, WriteMode
from tg_actors.runstate import Trigger

_MODES = ", ".join(mode.value for mode in WriteMode)
_EXPORTS = ", ".join(fmt.value for fmt in ExportFormat)


@dataclass(frozen=True, slots=True)
class Begin:
    """Start attempt `attempt` of the run (None: whatever attempt it is at, no fence);
    `incremental`: the job has a cursor, and Begun brings the committed one."""

    run_id: str
    _: KW_ONLY
    job: str
    attempt: int | None = None
    incremental: bool = False
    # source.for_each.sql: the Database runs it (read-only) and Begun brings its rows
    for_each_sql: str | None = None
    # source.for_each or source.window: Begun brings the job's positions (tg.state)
    positioned: bool = False
    # auth oauth2_refresh_token: Begun brings the refresh token a run rotated to (tg.state)
    refresh_token: bool = False

    def __post_init__(self) -> None:
        _text(self, "run_id", self.run_id)
        _text(self, "job", self.job)
        _attempt(self, self.attempt)
        _flag(self, "incremental", self.incremental)
        if self.for_each_sql is not None:
            _text(self, "for_each_sql", self.for_each_sql)
        _flag(self, "positioned", self.positioned)
        _flag(self, "refresh_token", self.refresh_token)


@dataclass(frozen=True, slots=True)
class Resume:
    """Where an earlier attempt of the run stopped: its last checkpoint, with the pages
    fetched and rows staged up to it (the same values as DuckStore.checkpoint)."""

    checkpoint: dict[str, Any]
    pages: int
    rows: int

    def __post_init__(self) -> None:
        if not isinstance(self.checkpoint, dict):
            _refuse(self, "checkpoint", self.checkpoint, "a dict")
        _count(self, "pages", self.pages)
        _count(self, "rows", self.rows)


@dataclass(frozen=True, slots=True)
class Begun:
    """A started attempt: where it resumes (None: from the first page), the job's committed
    cursor (None when not incremental, or none yet) and the start stamped on the run; the
    run's trigger and, for a backfill, its range [from, to); for a for_each job the rows of
    its SQL, and for a for_each or window job the committed positions ({key: {cursor,
    window}}, chains.py)."""

    resume: Resume | None
    cursor: str | None
    started_at: datetime
    _: KW_ONLY
    trigger: str = Trigger.MANUAL
    range: tuple[datetime, datetime] | None = None
    rows: pa.Table | None = None
    positions: dict[str, dict[str, Any]] | None = None
    # (rotated refresh token, digest of the job's own it descends from): never in a repr
    refresh_token: tuple[str, str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _text(self, "trigger", self.trigger)
        if self.rows is not None and not isinstance(self.rows, pa.Table):
            _refuse(self, "rows", self.rows, "a pyarrow Table or None")
        if self.positions is not None and not isinstance(self.positions, dict):
            _refuse(self, "positions", self.positions, "a dict or None")
        if self.range is not None and (
            len(self.range) != 2 or not all(isinstance(t, datetime) for t in self.range)
        ):
            _refuse(self, "range", self.range, "a (from, to) pair of datetimes or None")
        if self.resume is not None and not isinstance(self.resume, Resume):
            _refuse(self, "resume", self.resume, "a Resume or None")
        if self.cursor is not None and not isinstance(self.cursor, str):
            _refuse(self, "cursor", self.cursor, "a str or None")
        if not isinstance(self.started_at, datetime):
            _refuse(self, "started_at", self.started_at, "a datetime")


@dataclass(frozen=True, slots=True)
class Commit:
    """Commit the run: its staged rows and `batch` (the tail it did not stage; a RecordBatch
    becomes a Table) into `table` by `write`, its `cursor` (job, value) and `succeeded`;
    `pages` fetched in all. `attempt` fences off a superseded attempt (None: no fence).
    `export`: the job's destination.export, a file the Database rewrites after the commit.
    `positions`: per-chain cursors and window positions ({key: {cursor, window}}) merged
    forward-only into tg.state; `reset_state` (a refresh): the job's cursor and positions
    become exactly this commit's, whatever was stored."""

    run_id: str
    _: KW_ONLY
    table: str
    write: WriteMode
    primary_key: tuple[str, ...] = ()
    pages: int
    cursor: tuple[str, str] | None = None
    widen_to_varchar: bool = False
    attempt: int | None = None
    batch: pa.Table | None = None
    export: ExportFormat | None = None
    positions: dict[str, dict[str, Any]] | None = None
    reset_state: bool = False
    job: str = ""  # whose positions (and, with reset_state, cursor) this commit writes
    skipped_requests: int = 0  # responses a `skip` rule dropped (tg.runs.skipped_requests)
    # the job's checks, run inside the commit transaction (store/checks.py)
    checks: tuple[AnyCheck, ...] = ()
    schema_contract: SchemaContract = SchemaContract.EVOLVE

    def __post_init__(self) -> None:
        _text(self, "run_id", self.run_id)
        _text(self, "job", self.job)
        _count(self, "skipped_requests", self.skipped_requests)
        object.__setattr__(self, "checks", tuple(self.checks))
        for check in self.checks:
            if not hasattr(check, "label") or not hasattr(check, "on_fail"):
                _refuse(self, "checks", check, "a tuple of the job's checks")
        try:
            object.__setattr__(self, "schema_contract", SchemaContract(self.schema_contract))
        except ValueError:
            contracts = ", ".join(c.value for c in SchemaContract)
            _refuse(
                self, "schema_contract", self.schema_contract, f"one of {contracts}", ValueError
            )
        if (self.positions or self.reset_state) and not self.job:
            raise ValueError("Commit.job must name the job when positions or reset_state are set")
        if self.positions is not None and not isinstance(self.positions, dict):
            _refuse(self, "positions", self.positions, "a dict or None")
        _flag(self, "reset_state", self.reset_state)
        if not isinstance(self.table, str):
            _refuse(self, "table", self.table, "a str")
        if not TABLE_NAME.fullmatch(self.table):
            raise ValueError(
                f"Commit.table: invalid table name {self.table!r}"
                " (letters, digits, _; not a digit first; max 63)"
            )
        try:
            object.__setattr__(self, "write", WriteMode(self.write))
        except ValueError:
            _refuse(self, "write", self.write, f"one of {_MODES}", ValueError)
        object.__setattr__(self, "primary_key", _names(self, self.primary_key))
        _count(self, "pages", self.pages)
        object.__setattr__(self, "cursor", _cursor(self, self.cursor))
        _flag(self, "widen_to_varchar", self.widen_to_varchar)
        _attempt(self, self.attempt)
        object.__setattr__(self, "batch", _batch(self, self.batch))
        if self.export is not None:
            try:
                object.__setattr__(self, "export", ExportFormat(self.export))
            except ValueError:
                _refuse(self, "export", self.export, f"one of {_EXPORTS} or None", ValueError)

    @property
    def cursor_job(self) -> str | None:
        """The job whose cursor this commit moves, if any."""
        return None if self.cursor is None else self.cursor[0]


# -- the checks -----------------------------------------------------------------------------


def _refuse(
    record: object, name: str, value: object, want: str, error: type[Exception] = TypeError
) -> NoReturn:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    raise error(f"{type(record).__name__}.{name} must be {want}, not {shown}")


def _text(record: object, name: str, value: object) -> None:
    if not isinstance(value, str):
        _refuse(record, name, value, "a str")


def _flag(record: object, name: str, value: object) -> None:
    if not isinstance(value, bool):
        _refuse(record, name, value, "a bool")


def _attempt(record: object, value: object) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        _refuse(record, "attempt", value, "an int or None")


def _count(record: object, name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        _refuse(record, name, value, "an int >= 0")
    if value < 0:
        _refuse(record, name, value, "an int >= 0", ValueError)


def _names(record: object, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        _refuse(record, "primary_key", value, "a sequence of column names")
    names = tuple(value)
    if not all(isinstance(name, str) for name in names):
        _refuse(record, "primary_key", value, "a sequence of column names (str)")
    return names


def _cursor(record: object, value: object) -> tuple[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, tuple | list) or len(value) != 2:
        _refuse(record, "cursor", value, "a (job, value) pair of str or None")
    job, text = value
    if not isinstance(job, str) or not isinstance(text, str):
        _refuse(record, "cursor", value, "a (job, value) pair of str or None")
    return (job, text)


def _batch(record: object, value: object) -> pa.Table | None:
    if value is None or isinstance(value, pa.Table):
        return value
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    _refuse(record, "batch", value, "a pyarrow Table, RecordBatch or None")
