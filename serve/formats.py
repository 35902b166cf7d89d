"""The answers of POST /api/sql by `Accept`: JSON, or a stream written batch by batch (Arrow
IPC stream, CSV, Parquet), so no answer is ever whole in the replica's memory.

`negotiate(accept)` picks the format; `encode(first, batches, fmt)` turns the Database's Arrow
record batches (the first one empty, carrying the schema) into the bytes of the answer, one
chunk per batch, each written off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

Format = Literal["json", "arrow", "csv", "parquet"]
MEDIA_TYPES: dict[Format, str] = {
    "json": "application/json",
    "arrow": "application/vnd.apache.arrow.stream",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}
_BY_MEDIA: dict[str, Format] = {media: fmt for fmt, media in MEDIA_TYPES.items()}
_BY_MEDIA |= {"*/*": "json", "application/*": "json", "text/*": "csv"}
_BY_MEDIA |= {"application/x-parquet": "parquet", "application/vnd.apache.arrow.file": "arrow"}


def negotiate(accept: str | None) -> Format | None:
    """The format the `Accept` header asks for first (by q, then order); JSON when there is
    none; None when it names nothing served (406)."""
    if accept is None or not accept.strip():
        return "json"
    wanted: list[tuple[float, int, Format]] = []
    for i, part in enumerate(accept.split(",")):
        media, *options = (p.strip() for p in part.split(";"))
        q = 1.0
        for option in options:
            key, _, value = option.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        fmt = _BY_MEDIA.get(media.lower())
        if fmt is not None and q > 0:
            wanted.append((-q, i, fmt))
    return min(wanted)[2] if wanted else None


class _Chunks:
    """A write-only file for pyarrow's writers whose bytes are taken out after each batch."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._written += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _writer(fmt: Format, sink: pa.NativeFile, schema: pa.Schema) -> Any:
    if fmt == "arrow":
        return pa.ipc.new_stream(sink, schema)
    if fmt == "csv":
        return pa_csv.CSVWriter(sink, schema)
    if fmt == "parquet":
        return pq.ParquetWriter(sink, schema)
    raise ValueError(f"not a streamed format: {fmt!r}")


async def encode(
    first: pa.RecordBatch, batches: AsyncIterator[pa.RecordBatch], fmt: Format
) -> AsyncIterator[bytes]:
    """The answer's bytes: `first` gives the schema (and rows, if it has any), then one chunk
    per batch, then the format's end (the Arrow end-of-stream, Parquet's footer)."""
    chunks = _Chunks()
    writer = await asyncio.to_thread(_writer, fmt, pa.PythonFile(chunks, mode="w"), first.schema)

    def write(batch: pa.RecordBatch) -> bytes:
        if batch.num_rows:
            writer.write_batch(batch)
        return chunks.take()

    def finish() -> bytes:
        writer.close()
        return chunks.take()

    try:
        if out := await asyncio.to_thread(write, first):
            yield out
        async for batch in batches:
            if out := await asyncio.to_thread(write, batch):
                yield out
        if out := await asyncio.to_thread(finish):
            yield out
    finally:
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()
