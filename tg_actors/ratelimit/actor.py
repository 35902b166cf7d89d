"""RateLimiter actor: one for the system, a reservation book per job (ratelimit.book).

Engines call `reserve(job, per_second)` before each request and sleep the returned delay, so
the limit holds for the job across every engine and node.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tg_actors import interfaces
from tg_actors.ratelimit.book import Reservations


class RateLimiter:
    def __init__(self) -> None:
        self._book = Reservations()

    async def reserve(self, key: str, per_second: float) -> float:
        return self._book.reserve(key, per_second, time.monotonic())

    async def ping(self) -> str:
        return "ok"


if TYPE_CHECKING:  # the actor keeps the promises of its face: mypy checks this conversion

    def _keeps_its_face(actor: RateLimiter) -> interfaces.RateLimiter:
        return actor
