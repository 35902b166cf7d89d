from __future__ import annotations

import pytest

from tg_actors.ratelimit.book import Reservations


def test_slots_are_one_interval_apart() -> None:
    book = Reservations()
    waits = [book.reserve("job", 10.0, now=100.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_keys_are_independent_and_idle_time_is_not_banked_beyond_burst() -> None:
    book = Reservations(burst=2)
    assert book.reserve("a", 1.0, now=0.0) == 0.0
    assert book.reserve("b", 1.0, now=0.0) == 0.0
    # after a long idle, only `burst` requests go at once
    waits = [book.reserve("a", 1.0, now=1000.0) for _ in range(3)]
    assert waits == pytest.approx([0.0, 0.0, 1.0])


@pytest.mark.parametrize("rate", [0.5, 3.0, 50.0])
def test_n_requests_take_at_least_n_minus_burst_intervals(rate: float) -> None:
    book = Reservations()
    last = max(book.reserve("k", rate, now=0.0) for _ in range(20))
    assert last == pytest.approx(19 / rate)
