"""Per-request retry policy: which answers to retry, and how long to wait before the next try.

Pure: the RNG and the current time are passed in, so every delay is testable from a table::

    policy = RetryPolicy(max_tries=5, backoff=0.5, max_backoff=30.0)
    policy.delay(1, rng)        # after try 1: uniform in [0, 0.5]
    policy.delay(4, rng)        # after try 4: uniform in [0, 4.0]
    policy.wait(2, rng, retry_after=7.0)   # the server said 7 s: 7.0
    policy.refuses(3600.0)      # True: past max_retry_after (15 min), fail instead of sleeping

Delays use "full jitter" (AWS architecture blog, "Exponential Backoff And Jitter"): many
clients failing together spread out instead of retrying in lockstep.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# 408 Request Timeout and 429 Too Many Requests are the 4xx that a later try may fix
_RETRYABLE_4XX = frozenset({408, 429})


def is_retryable_status(status: int) -> bool:
    """True for 408, 429 and every 5xx: answers a later try may turn into a success."""
    return status in _RETRYABLE_4XX or 500 <= status <= 599


def retry_after_seconds(header: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` value (RFC 9110 §10.2.3), or None when absent or
    unreadable. Delay-seconds (`"120"`) or an HTTP date (`"Wed, 21 Oct 2015 07:28:00 GMT"`);
    a date in the past gives 0. `now` must be timezone-aware."""
    if header is None:
        return None
    text = header.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # RFC 850 / asctime forms carry no zone: they mean GMT
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


DEFAULT_MAX_RETRY_AFTER = 900.0  # TG_MAX_RETRY_AFTER's default: 15 min


@dataclass(frozen=True)
class RetryPolicy:
    """`max_tries` tries in all (1 = no retry); delays in seconds. `max_backoff` caps our own
    backoff; a server's Retry-After has its own, larger bound, `max_retry_after`: a server
    that asks for 60 s gets 60 s (capping it at 30 s would only burn the tries), one that asks
    for more than the bound is refused (`refuses`), not slept on."""

    max_tries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER

    def __post_init__(self) -> None:
        if self.max_tries < 1:
            raise ValueError(f"max_tries must be at least 1, got {self.max_tries}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff cannot be negative")
        if not self.max_retry_after >= 0:
            raise ValueError(f"max_retry_after cannot be negative, got {self.max_retry_after}")

    def ceiling(self, try_number: int) -> float:
        """The largest delay after try `try_number` (1-based): min(max_backoff, backoff·2^(n-1))."""
        if try_number < 1:
            raise ValueError(f"try numbers start at 1, got {try_number}")
        # 2**1100 overflows a float: past the cap the exponent no longer matters
        exponent = min(try_number - 1, 1023)
        return min(self.max_backoff, self.backoff * 2.0**exponent)

    def delay(self, try_number: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, ceiling(try_number)]."""
        return rng.uniform(0.0, self.ceiling(try_number))

    def wait(self, try_number: int, rng: random.Random, retry_after: float | None = None) -> float:
        """The pause after a failed try: the server's Retry-After when it sent one (at most
        max_retry_after: check `refuses` first), else the jittered backoff."""
        if retry_after is not None:
            return min(max(0.0, retry_after), self.max_retry_after)
        return self.delay(try_number, rng)

    def refuses(self, retry_after: float | None) -> bool:
        """True when the server asks for a longer wait than max_retry_after: the request
        should fail, naming the wait, rather than sleep that long."""
        return retry_after is not None and retry_after > self.max_retry_after

    def gives_up_after(self, try_number: int) -> bool:
        """True when try `try_number` was the last one allowed."""
        return try_number >= self.max_tries
