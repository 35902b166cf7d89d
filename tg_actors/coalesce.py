"""Group commit for remote calls: concurrent callers share one batched call.

An actor call costs about the same for one item as for hundreds (the round trip and the
transaction dominate), so under load the calls made while a batch is in flight are gathered
and sent together as the next batch. With no load a call goes out at once: nothing waits on a
timer, so batching adds no latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# the batched call: one result per item, in order; an item's exception is returned, not raised
BatchCall = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    def __init__(self, call: BatchCall[T, R], max_batch: int = 500) -> None:
        self._call = call
        self._max = max_batch
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # how many batched calls went out (for stats and tests)
        self.items = 0  # how many items they carried

    async def submit(self, item: T) -> R:
        """The item's result once its batch returns; its own exception is raised here."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def submit_all(self, items: list[T]) -> list[R | BaseException]:
        """Several items at once: each one's result or exception, in order (never raises for
        an item's own error)."""
        results = await asyncio.gather(
            *(self.submit(item) for item in items), return_exceptions=True
        )
        return list(results)

    async def _drain(self) -> None:
        while self._pending:
            await asyncio.sleep(0)  # let callers woken in this loop turn join the batch
            batch, self._pending = self._pending[: self._max], self._pending[self._max :]
            batch = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not batch:
                continue
            self.batches += 1
            self.items += len(batch)
            try:
                results = await self._call([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batched call returned {len(results)} of {len(batch)}")
            except asyncio.CancelledError:
                for _, fut in [*batch, *self._pending]:
                    fut.cancel()
                self._pending = []
                raise
            except Exception as exc:  # the whole call failed: every caller sees why
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():  # its caller gave up (cancelled) meanwhile
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
