"""Rate limits shared by every engine that calls the same job: slots handed out by reservation.

Each caller reserves the next free slot (1/rate apart) and sleeps until it; a small burst is
allowed so an idle limit does not delay the first requests. Pure: time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Reservations:
    burst: int = 1
    _next_free: dict[str, float] = field(default_factory=dict)

    def reserve(self, key: str, per_second: float, now: float) -> float:
        """Seconds the caller must wait before its request (0 when a slot is free now)."""
        interval = 1.0 / per_second
        # an idle limit has saved up at most `burst` slots
        earliest = now - interval * (self.burst - 1)
        slot = max(self._next_free.get(key, earliest), earliest)
        self._next_free[key] = slot + interval
        return max(0.0, slot - now)
