"""Fetch ahead, hand back in order: a window of at most `size` requests in flight.

    window = Window(fetch, size=4)
    window.push(request)                 # starts fetch(request) as a task
    request, result = await window.pop() # the OLDEST request's result (raises what it raised)
    window.clear()                       # cancel the rest (the plan changed, or we stop)

Results come back in the order the requests were pushed, whatever order they finish in, so
the caller can keep its "everything up to here is done" checkpoints. `aclose()` cancels what
is still running and waits for it: no task outlives the run, no exception goes unretrieved.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
T = TypeVar("T")


class Window(Generic[K, T]):
    def __init__(self, fetch: Callable[[K], Awaitable[T]], size: int) -> None:
        if size < 1:
            raise ValueError(f"a window holds at least one request, got size={size}")
        self._fetch, self.size = fetch, size
        self._pending: deque[tuple[K, asyncio.Task[T]]] = deque()
        self._cancelled: list[asyncio.Task[T]] = []

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def free(self) -> int:
        return self.size - len(self._pending)

    def keys(self) -> list[K]:
        """The requests in flight (or done and not yet popped), oldest first."""
        return [key for key, _ in self._pending]

    def push(self, key: K) -> None:
        if not self.free:
            raise RuntimeError(f"the window is full ({self.size} in flight)")
        self._pending.append((key, asyncio.ensure_future(self._run(key))))

    async def _run(self, key: K) -> T:
        return await self._fetch(key)

    async def pop(self) -> tuple[K, T]:
        """The oldest request and its result; raises what its fetch raised."""
        key, task = self._pending.popleft()
        return key, await task

    def clear(self) -> None:
        """Cancel everything in flight (awaited in `aclose`)."""
        for _, task in self._pending:
            if task.done():
                if not task.cancelled():
                    task.exception()  # retrieved: asyncio does not log it as forgotten
            else:
                task.cancel()
                self._cancelled.append(task)
        self._pending.clear()
        # forget the ones that have finished, so a long run does not pile them up
        self._cancelled = [task for task in self._cancelled if not task.done()]

    async def aclose(self) -> None:
        self.clear()
        tasks, self._cancelled = self._cancelled, []
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
