"""InFlight: per-job counts, leases renewed by signs of life, and which engine holds a run."""

from __future__ import annotations

from tg_actors.scheduler.inflight import InFlight


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_take_and_release_count_runs_per_job() -> None:
    flight = InFlight(30.0, Clock())
    flight.take("r1", "a", 1)
    flight.take("r2", "a", 1)
    flight.take("r3", "b", 1)
    flight.take("r1", "a", 1)  # taken again (recovery): still one run
    assert (len(flight), flight.running("a"), flight.running("b")) == (3, 2, 1)
    assert "r2" in flight and list(flight) == ["r1", "r2", "r3"]
    assert flight.release("r2") == "a" and flight.release("r2") is None
    assert flight.release("r1") == "a"
    assert (flight.running("a"), len(flight)) == (0, 1)


def test_a_run_expires_when_silent_longer_than_the_lease_and_signs_of_life_renew_it() -> None:
    clock = Clock()
    flight = InFlight(30.0, clock)
    flight.take("quiet", "a", 1)
    flight.take("busy", "a", 1)
    clock.now += 20
    flight.seen("busy")
    clock.now += 10.5
    assert flight.expired() == ["quiet"]  # 30.5 s silent; busy only 10.5 s
    clock.now += 20
    assert sorted(flight.expired()) == ["busy", "quiet"]
    flight.release("quiet")
    assert flight.expired() == ["busy"]


def test_events_of_runs_no_longer_in_flight_leave_nothing_behind() -> None:
    clock = Clock()
    flight = InFlight(30.0, clock)
    flight.take("r1", "a", 1)
    flight.release("r1")
    flight.seen("r1", "engine-0")  # a late heartbeat
    clock.now += 100
    assert flight.expired() == [] and flight.held_by("engine-0") == []
    assert "r1" not in flight


def test_held_by_follows_the_engine_that_last_spoke_for_the_run() -> None:
    flight = InFlight(30.0, Clock())
    flight.take("r1", "a", 1)
    flight.take("r2", "a", 1, engine="engine-1")  # recovered: its engine known at once
    flight.take("r3", "b", 1)
    assert flight.held_by("engine-1") == ["r2"]
    flight.seen("r1", "engine-1")
    flight.seen("r3", "engine-0")
    flight.seen("r2", "engine-0")  # retried elsewhere
    assert flight.held_by("engine-1") == ["r1"]
    assert sorted(flight.held_by("engine-0")) == ["r2", "r3"]
    flight.clear()
    assert len(flight) == 0 and flight.held_by("engine-0") == [] and flight.running("b") == 0


def test_signs_of_life_of_another_attempt_do_not_renew_the_lease() -> None:
    clock = Clock()
    flight = InFlight(30.0, clock)
    flight.take("r1", "a", 2, "e1")
    clock.now += 20
    flight.seen("r1", "e0", attempt=1)  # the superseded attempt's heartbeat
    clock.now += 20
    assert flight.expired() == ["r1"] and flight.held_by("e0") == []
    flight.seen("r1", "e1", attempt=2)
    assert flight.expired() == []
