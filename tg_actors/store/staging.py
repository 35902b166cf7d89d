"""A run's staged rows as Arrow IPC files, so that DuckDB writes each row once: at commit.

Staging the batches of a long run in a DuckDB table wrote every row twice (into the staging
table, then from it into the target) and spent the Database's time on the first write;
bench/staging_bench.py measures both. Here each batch a run stages becomes one file,
`<root>/<run_id>/<first>.arrow` (`first`: the SEQ of its first row), written and fsynced
before the transaction that lists it in `tg.staged_batches`, with the checkpoint it follows,
commits (writes.stage_batch). A file that no committed row lists is left over from a crash or
a refused batch and is never read. The run's 0-row table `tg."stage_<run_id>"` still carries
the columns evolved so far (evolve.py), and rows staged before the files existed.

A file goes only after the transaction that stopped listing it has committed (`sweep`), so
a rolled-back commit or discard loses nothing. At commit the files are memory-mapped (no copy)
and read with the run's columns: one after the other by an append, all at once by a merge
(writes._Staged).
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import shutil
import tempfile
import weakref
from pathlib import Path

import duckdb
import pyarrow as pa

from tg_actors.errors import DestinationError

SUFFIX = ".arrow"
log = logging.getLogger(__name__)


class Staging:
    """The folder of one DuckStore's staged files: beside its DuckDB file, or a temporary
    folder (made on first use, removed on close) for an in-memory database."""

    def __init__(self, db_path: str) -> None:
        self._root = None if db_path == ":memory:" else Path(db_path + ".staging")
        self._durable = self._root is not None  # an in-memory database outlives no crash
        self._finalizer: weakref.finalize[..., Staging] | None = None

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="tg_staging_"))
            self._finalizer = weakref.finalize(self, shutil.rmtree, self._root, True)
        return self._root

    def write(self, run_id: str, first: int, rows: pa.Table) -> str:
        """Write `rows` as the run's file starting at SEQ `first`, durably; its name."""
        folder = self.root / run_id
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{run_id}/{first:012d}{SUFFIX}"
        path, partial = self.root / name, self.root / f"{name}.partial"
        with pa.OSFile(str(partial), "wb") as sink:
            with pa.ipc.new_file(sink, rows.schema) as writer:
                writer.write_table(rows)
        if self._durable:
            _fsync(partial)
        os.replace(partial, path)  # a reader sees the whole file or none
        if self._durable:
            _fsync(folder)  # and the name survives a power cut, as the row listing it will
        return name

    def unlink(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def map(self, name: str) -> Mapped:
        """The file's rows, memory-mapped (no copy, no file descriptor kept: a run may have
        thousands of files); DestinationError when it cannot be read (a staging folder
        deleted or damaged by hand)."""
        path = self.root / name
        try:
            with pa.memory_map(str(path)) as source:
                region = source.read_buffer(source.size())  # the whole mapping, zero-copy
                return Mapped(region, pa.ipc.open_file(region).read_all())
        except (OSError, pa.ArrowException) as exc:
            raise DestinationError(f"staged file {path} cannot be read: {exc}") from exc

    def sweep(self, con: duckdb.DuckDBPyConnection, *, files: bool = False) -> int:
        """Remove the folders of runs with no listed file (after the transaction that unlisted
        them); with `files`, also the unlisted files of the other runs (at open: a crash
        between writing a file and listing it). How many folders went."""
        if self._root is None or not self._root.is_dir():
            return 0
        folders = [entry.name for entry in os.scandir(self._root) if entry.is_dir()]
        if not folders:
            return 0
        listed = con.execute(
            "SELECT run_id, file FROM tg.staged_batches"
            " WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
            [folders],
        ).fetchall()
        live = {str(run_id) for run_id, _ in listed}
        gone = [run_id for run_id in folders if run_id not in live]
        for run_id in gone:
            shutil.rmtree(self._root / run_id, ignore_errors=True)
        if files:
            keep = {str(name) for _, name in listed}
            for run_id in live:
                for entry in os.scandir(self._root / run_id):
                    if f"{run_id}/{entry.name}" not in keep:
                        Path(entry.path).unlink(missing_ok=True)
        return len(gone)

    def close(self) -> None:
        if self._finalizer is not None:  # only a temporary folder goes with the store
            self._finalizer()


class Mapped:
    """A staged file's rows over its memory mapping (`region`, which the rows point into)."""

    def __init__(self, region: pa.Buffer, table: pa.Table) -> None:
        self._region, self.table = region, table

    def release(self) -> None:
        """Give back the memory of the pages read so far. DuckDB keeps a table it scanned,
        and so the mapping, until its transaction ends; a page read again comes back from
        the file (read-only, never changed)."""
        if self._region.size and _libc.madvise(
            ctypes.c_void_p(self._region.address),
            ctypes.c_size_t(self._region.size),
            mmap.MADV_DONTNEED,
        ):
            log.debug("madvise: %s", os.strerror(ctypes.get_errno()))  # only memory is at stake


_libc = ctypes.CDLL(None, use_errno=True)  # madvise: pyarrow's mapping has no such method


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
