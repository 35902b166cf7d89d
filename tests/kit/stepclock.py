"""Clocks for tests. `Clock` (store tests) advances one second per reading, so queued_at orders
runs deterministically and two stamps are equal only if read once. `SteppedClock` (the
Scheduler on a stepped clock, the fault simulation) moves only when told to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class SteppedClock:
    """Wall time and monotonic time advance together, only when told to (`advance`)."""

    def __init__(self, start: datetime = T0) -> None:
        self.start = start
        self.t, self.mono = start, 1000.0

    def now(self) -> datetime:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)
        self.mono += seconds

    @property
    def seconds(self) -> float:
        """Seconds since the start."""
        return (self.t - self.start).total_seconds()
