"""A short-lived, single-flight cache for the API's list views.

Two hundred dashboards polling `GET /api/runs` ask the same question many times a second;
within `ttl` seconds they share one answer (already JSON-encoded), and concurrent misses share
one computation. Any write through the API clears it, so a client never sees its own change
missing; changes made elsewhere (a run ending) show within `ttl`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable


class TtlCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._values: dict[Hashable, tuple[float, bytes]] = {}
        self._pending: dict[Hashable, asyncio.Future[bytes]] = {}
        self._generation = 0
        self.hits = self.misses = 0

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[bytes]]) -> bytes:
        if self.ttl <= 0:
            return await compute()
        now = self._clock()
        cached = self._values.get(key)
        if cached is not None and cached[0] > now:
            self.hits += 1
            return cached[1]
        pending = self._pending.get(key)
        if pending is not None:  # someone is computing it: wait for theirs
            self.hits += 1
            return await asyncio.shield(pending)
        self.misses += 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        generation = self._generation
        try:
            value = await compute()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._pending.pop(key, None)
        if generation == self._generation:  # not cleared by a write meanwhile
            self._values[key] = (self._clock() + self.ttl, value)
        future.set_result(value)
        return value

    def clear(self) -> None:
        self._values.clear()
        self._generation += 1
