from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tg_actors.retry import RetryPolicy, is_retryable_status, retry_after_seconds

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("backoff", "max_backoff", "try_number", "ceiling"),
    [
        (0.5, 30.0, 1, 0.5),
        (0.5, 30.0, 2, 1.0),
        (0.5, 30.0, 3, 2.0),
        (0.5, 30.0, 6, 16.0),
        (0.5, 30.0, 7, 30.0),  # 32 capped
        (0.5, 30.0, 50, 30.0),
        (0.5, 30.0, 5000, 30.0),  # no float overflow far past the cap
        (2.0, 1.0, 1, 1.0),  # the cap applies from the first retry
        (0.0, 30.0, 9, 0.0),
    ],
)
def test_ceiling_table(backoff: float, max_backoff: float, try_number: int, ceiling: float) -> None:
    assert RetryPolicy(5, backoff, max_backoff).ceiling(try_number) == ceiling


@given(
    backoff=st.floats(0, 100, allow_nan=False),
    max_backoff=st.floats(0, 1000, allow_nan=False),
    try_number=st.integers(1, 2000),
    seed=st.integers(0, 2**32),
)
def test_delay_is_full_jitter_within_bounds(
    backoff: float, max_backoff: float, try_number: int, seed: int
) -> None:
    policy = RetryPolicy(5, backoff, max_backoff)
    delay = policy.delay(try_number, random.Random(seed))
    ceiling = min(max_backoff, backoff * 2 ** min(try_number - 1, 1023))
    assert 0.0 <= delay <= policy.ceiling(try_number) == pytest.approx(ceiling)
    assert policy.ceiling(try_number) <= policy.ceiling(try_number + 1) <= max_backoff


def test_jitter_spreads_over_the_whole_range() -> None:
    policy, rng = RetryPolicy(5, 1.0, 30.0), random.Random(7)
    delays = [policy.delay(3, rng) for _ in range(2000)]  # uniform in [0, 4]
    assert min(delays) < 0.1 and max(delays) > 3.9
    assert sum(delays) / len(delays) == pytest.approx(2.0, abs=0.15)


def test_the_same_seed_gives_the_same_delays() -> None:
    policy = RetryPolicy(5, 0.5, 30.0)
    first = [policy.delay(n, random.Random(3)) for n in range(1, 6)]
    assert first == [policy.delay(n, random.Random(3)) for n in range(1, 6)]


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (None, None),  # no header: the jittered backoff
        (7.0, 7.0),
        (0.0, 0.0),
        (120.0, 120.0),  # above max_backoff: honoured (issue 12 #14), up to max_retry_after
        (900.0, 900.0),
    ],
)
def test_wait_prefers_retry_after(retry_after: float | None, expected: float | None) -> None:
    policy = RetryPolicy(5, 0.5, 30.0)
    wait = policy.wait(2, random.Random(1), retry_after)
    if expected is None:
        assert wait == policy.delay(2, random.Random(1))
    else:
        assert wait == expected


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),  # not RFC, but seen in the wild
        ("0", 0.0),
        ("-5", 0.0),
        ("inf", None),
        ("nan", None),
        ("soon", None),
        (http_date(NOW + timedelta(seconds=45)), 45.0),
        (http_date(NOW - timedelta(hours=1)), 0.0),  # a date in the past: now
        ("Sunday, 01-Mar-26 12:01:00 GMT", 60.0),  # RFC 850
        ("Sun Mar  1 12:00:30 2026", 30.0),  # asctime, zoneless: GMT
    ],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert retry_after_seconds(header, NOW) == expected


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (200, False),
        (301, False),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (408, True),
        (409, False),
        (422, False),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (599, True),
    ],
)
def test_is_retryable_status(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_gives_up_after_max_tries() -> None:
    policy = RetryPolicy(3, 0.5, 30.0)
    assert [policy.gives_up_after(n) for n in (1, 2, 3)] == [False, False, True]
    assert RetryPolicy(1, 0.5, 30.0).gives_up_after(1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tries": 0}, "max_tries must be at least 1"),
        ({"backoff": -1.0}, "cannot be negative"),
    ],
)
def test_invalid_policies(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_try_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        RetryPolicy().ceiling(0)


def test_retry_after_has_its_own_bound() -> None:
    """Issue 12 #14: Retry-After is capped by max_retry_after (TG_MAX_RETRY_AFTER, 15 min),
    not by max_backoff; past it the request is refused, not slept on."""
    policy = RetryPolicy(5, 0.5, 30.0)
    assert policy.max_retry_after == 900.0
    assert not policy.refuses(None) and not policy.refuses(60.0) and not policy.refuses(900.0)
    assert policy.refuses(900.5) and policy.refuses(3600.0)
    short = RetryPolicy(5, 0.5, 30.0, max_retry_after=10.0)
    assert short.refuses(11.0) and short.wait(1, random.Random(1), 11.0) == 10.0
    with pytest.raises(ValueError, match="max_retry_after"):
        RetryPolicy(5, 0.5, 30.0, max_retry_after=-1.0)
