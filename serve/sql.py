"""The Database's query stream seen from the Serve replica: `sql_batches`, an actor generator,
is an ObjectRefGenerator over Ray (one Arrow batch per object ref). `open_batches` waits for
its first batch (empty, the schema) before anything is answered, so the query's error becomes
the HTTP status; the batches after it come one at a time, the actor running at most
BACKPRESSURE batches ahead of the replica, so neither side holds the whole result.

The one place this stream's Ray errors are translated, as peer.py does for the faces: an
error the actor raised comes out as itself, an actor down or restarting as PeerUnavailable.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pyarrow as pa
import ray
from ray.exceptions import RayActorError, RayTaskError

from tg_actors.errors import PeerUnavailable
from tg_actors.names import DATABASE
from tg_actors.peer import unwrap

BACKPRESSURE = 4  # batches (64k rows each) the Database may have produced and not yet sent


async def open_batches(
    handle: Any,
    sql: str,
    params: list[Any],
    limit: int | None,
    *,
    timeout: float | None = None,
    fit: str = "arrow",
) -> tuple[pa.RecordBatch, AsyncIterator[pa.RecordBatch]]:
    """(the first batch, the batches after it) of `handle.sql_batches(...)`; raises the
    query's error (QueryRefused, QueryFailed, QueryTimeout, TooManyQueries) or
    PeerUnavailable before returning. Closing the iterator early cancels the stream."""
    method = handle.sql_batches.options(_generator_backpressure_num_objects=BACKPRESSURE)
    refs = method.remote(sql, params, limit, timeout=timeout, fit=fit)
    batches = _batches(refs)
    try:
        first = await anext(batches)
    except BaseException:
        await batches.aclose()
        raise
    return first, batches


async def _batches(refs: Any) -> AsyncGenerator[pa.RecordBatch, None]:
    finished = False  # the generator ended, by its last batch or an error
    try:
        while True:
            try:
                batch: pa.RecordBatch = await (await anext(refs))
            except StopAsyncIteration:
                finished = True
                return
            except RayTaskError as exc:
                finished = True
                raise unwrap(exc) from None
            except RayActorError as exc:
                finished = True
                raise PeerUnavailable(DATABASE, type(exc).__name__) from exc
            except Exception:
                finished = True
                raise
            yield batch
    finally:
        if not finished:  # the client went away, or the replica stopped reading
            ray.cancel(refs)
