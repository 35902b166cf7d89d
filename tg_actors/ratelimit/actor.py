"""RateLimiter actor: one for the system, a reservation book per job (ratelimit.book).

Engines call `reserve(job, per_second)` before each request and sleep the returned delay, so
the limit holds for the job across every engine and node.
"""

from __future__ import annotations

import time

from tg_actors.ratelimit.book import Reservations


class RateLimiter:
    def __init__(self) -> None:
        self._book = Reservations()

    async def reserve(self, key: str, per_second: float) -> float:
        return self._book.reserve(key, per_second, time.monotonic())

    async def ping(self) -> str:
        return "ok"
