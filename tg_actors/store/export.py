"""Export files: a whole table written aside, then renamed into place, off the writer's thread.

`write_table` streams one table of schema `main` from a DuckDB connection into a file, batch by
batch (`to_arrow_reader` into `pyarrow.parquet.ParquetWriter`, or a CSV writer), so a table
bigger than memory never sits whole in it. The file is written under a temporary name in the
target's folder and then `os.replace`d over the target: a reader sees the previous complete
file or the new one, never half of one, and a failed write leaves the previous file as it was.

`Exporter` runs those for the Database actor (`destination.export: parquet`) on a thread of its
own with a cursor of its own: each export reads a snapshot of the table as committed when it
starts, while the writer's commits go on. One table is exported at a time, so two exports of a
table never interleave; commits that arrive while their table exports coalesce into one more
export after it, which reads them all: the newest commit always ends up in the file.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from tg_actors.store.schema import quote
from tg_actors.store.tables import table_name

log = logging.getLogger(__name__)

BATCH_ROWS = 64 * 1024  # rows read from DuckDB and written per step
EXPORTS_DIR = "exports"  # beside the DuckDB file: data/exports/<table>.parquet
FORMATS = {".parquet": "parquet", ".csv": "csv"}  # an output file's format, by its suffix
_NESTED = {"list", "array", "struct", "map", "union"}  # DuckDB type ids CSV cannot hold

# (run ids whose commits the export serves, level, message) -> into those runs' logs
Report = Callable[[list[str], str, str], None]


def exports_dir(db_path: Path | str) -> Path:
    """The folder of the export files: `exports` beside the DuckDB file."""
    return Path(db_path).parent / EXPORTS_DIR


def export_path(db_path: Path | str, table: str) -> Path:
    """Where `destination.export: parquet` keeps the table: <data dir>/exports/<table>.parquet."""
    return exports_dir(db_path) / f"{table}.parquet"


def format_of(path: Path) -> str:
    """The file format of `path` by its suffix; ValueError naming the suffixes known."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(FORMATS)
        raise ValueError(f"{path}: unknown file type {path.suffix or '(none)'!r}; use {known}")
    return fmt


def temp_path(target: Path) -> Path:
    """A fresh name beside `target` that is never `target` nor matches its suffix."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")


def write_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    target: Path,
    *,
    fmt: str = "parquet",
    batch_rows: int = BATCH_ROWS,
) -> int:
    """Write table `table` of schema main to `target` (fmt: parquet or csv); rows written.

    Written to a temporary file in the target's folder (created if needed) and renamed over
    `target`; on any error the temporary file is removed, `target` is untouched and the error
    raised. `con` is used by this call alone (a cursor of the writer's connection: it reads
    one snapshot while commits go on). TableNotFound when there is no such table."""
    if fmt not in FORMATS.values():
        raise ValueError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS.values())}")
    reader = con.sql(_select(con, table_name(con, table), fmt)).to_arrow_reader(
        batch_size=batch_rows
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(target)
    try:
        rows = _write(reader, temp, fmt)
        os.replace(temp, target)
    except BaseException:
        reader.close()
        with suppress(OSError):
            temp.unlink()
        raise
    return rows


def _select(con: duckdb.DuckDBPyConnection, table: str, fmt: str) -> str:
    """The query that reads the table; CSV has no nested values: lists, structs, maps and
    unions become DuckDB's text of them."""
    source = f"main.{quote(table)}"
    if fmt != "csv":
        return f"SELECT * FROM {source}"
    rel = con.sql(f"SELECT * FROM {source} LIMIT 0")
    columns = [
        f"CAST({quote(c)} AS VARCHAR) AS {quote(c)}" if t.id in _NESTED else quote(c)
        for c, t in zip(rel.columns, rel.types, strict=True)
    ]
    return f"SELECT {', '.join(columns)} FROM {source}"


def _write(reader: pa.RecordBatchReader, path: Path, fmt: str) -> int:
    rows = 0
    if fmt == "csv":
        with pa_csv.CSVWriter(str(path), reader.schema) as csv_writer:
            for batch in _batches(reader):
                csv_writer.write_batch(batch)
                rows += batch.num_rows
        return rows
    with pq.ParquetWriter(str(path), reader.schema) as writer:
        for batch in _batches(reader):
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def _batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    for batch in reader:
        if batch.num_rows:
            yield batch


class Exporter:
    """Rewrites <folder>/<table>.parquet after commits, one table at a time, on its own thread.

    `con` is a cursor used by this exporter's thread alone; `report(run_ids, level, message)`
    is called (on that thread) after each export: INFO with the rows written, or WARNING with
    the error, the previous file left in place. It never raises into the caller of `request`.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, folder: Path, report: Report) -> None:
        self._con, self._folder, self._report = con, folder, report
        self._cond = threading.Condition()
        self._pending: dict[str, list[str]] = {}  # table -> runs waiting for its next export
        self._busy: str | None = None
        self._closed = False
        self.exports = 0  # exports finished (written or failed), for tests and stats
        self._thread = threading.Thread(target=self._loop, name="duckdb-export", daemon=True)
        self._thread.start()

    def path(self, table: str) -> Path:
        return self._folder / f"{table}.parquet"

    def request(self, table: str, run_id: str) -> None:
        """Export `table` after the commit of `run_id` (already committed): soon, once."""
        with self._cond:
            if self._closed:
                return
            self._pending.setdefault(table, []).append(run_id)
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Until nothing is pending or exporting; False when `timeout` passed first."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._closed or (not self._pending and self._busy is None), timeout
            )

    def close(self, timeout: float = 10.0) -> None:
        """Drop what is pending, interrupt the export under way, stop the thread, close the
        cursor (so the writer can checkpoint and close). Safe to call twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._pending.clear()
            busy = self._busy is not None
            self._cond.notify_all()
        if busy:
            with suppress(Exception):
                self._con.interrupt()
        self._thread.join(timeout)
        with suppress(Exception):
            self._con.close()

    def _loop(self) -> None:
        # a cursor has settings of its own: TIMESTAMPTZ columns in UTC, as the writer has them
        with suppress(duckdb.Error):
            self._con.execute("SET TimeZone = 'UTC'")
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or bool(self._pending))
                if self._closed:
                    return
                table = next(iter(self._pending))  # the longest waiting table first
                runs = self._pending.pop(table)
                self._busy = table
            try:
                self._export(table, runs)
            finally:
                with self._cond:
                    self._busy = None
                    self.exports += 1
                    self._cond.notify_all()

    def _export(self, table: str, runs: list[str]) -> None:
        target = self.path(table)
        try:
            rows = write_table(self._con, table, target)
        except Exception as exc:
            if self._closed:  # interrupted by close(): nothing to tell
                return
            message = (
                f"export of {table} to {target} failed ({type(exc).__name__}: {exc});"
                " the previous file is left in place"
            )
            log.warning("%s", message)
            self._tell(runs, "WARNING", message)
            return
        self._tell(runs, "INFO", f"exported {rows} rows of {table} to {target}")

    def _tell(self, runs: list[str], level: str, message: str) -> None:
        try:
            self._report(list(dict.fromkeys(runs)), level, message)
        except Exception:  # a report that cannot be written must not stop the exports
            log.exception("reporting the export of runs %s failed", runs)
