"""`schedule.anchor`: interval ticks at anchor + k * interval (k any integer), default the epoch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tg_actors.errors import JobValidationError
from tg_actors.jobs import Schedule, parse_job
from tg_actors.scheduler.schedule import CATCHUP, EPOCH, SCHEDULE, DueTicks, due_ticks, next_fire


def sched(**fields: Any) -> Schedule:
    return Schedule.model_validate(fields)


def utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def prev_tick(schedule: Schedule, at: datetime) -> datetime:
    """The newest tick at or before `at` (due_ticks' backward walk, catchup all, no grace)."""
    got = due_ticks(schedule, at - schedule_interval(schedule), at, limit=1)
    (tick,) = [t for t, _ in got.ticks]
    return tick


def schedule_interval(schedule: Schedule) -> timedelta:
    assert schedule.interval is not None
    return schedule.interval


def job_errors(schedule: dict[str, Any]) -> list[tuple[str, str]]:
    data = {
        "name": "orders",
        "source": {"url": "http://127.0.0.1:9/orders"},
        "destination": {"table": "orders"},
        "schedule": schedule,
    }
    with pytest.raises(JobValidationError) as info:
        parse_job(data, "f.yaml")
    return info.value.errors


# --- next_fire -----------------------------------------------------------------------------

ANCHOR = "2024-05-01T10:00:03"  # 3s off the epoch's 10s grid

NEXT_FIRE = [
    # anchor in the past: ticks after it
    ({"interval": "10s", "anchor": ANCHOR}, "2024-05-01T10:00:03", "2024-05-01T10:00:13"),
    ({"interval": "10s", "anchor": ANCHOR}, "2024-05-01T10:00:13", "2024-05-01T10:00:23"),
    ({"interval": "10s", "anchor": ANCHOR}, "2024-05-01T10:00:12.999999", "2024-05-01T10:00:13"),
    ({"interval": "10s", "anchor": ANCHOR}, "2024-06-01T00:00:00", "2024-06-01T00:00:03"),
    # anchor in the future: ticks before it sit on the same grid (k < 0)
    ({"interval": "10s", "anchor": ANCHOR}, "2024-05-01T10:00:00", "2024-05-01T10:00:03"),
    ({"interval": "10s", "anchor": ANCHOR}, "2024-05-01T09:59:53", "2024-05-01T10:00:03"),
    ({"interval": "10s", "anchor": ANCHOR}, "2024-05-01T09:59:52.5", "2024-05-01T09:59:53"),
    ({"interval": "10s", "anchor": ANCHOR}, "2020-01-01T00:00:00", "2020-01-01T00:00:03"),
    ({"interval": "10s", "anchor": ANCHOR}, "1969-12-31T23:59:59", "1970-01-01T00:00:03"),
    # an anchor with an offset is an instant: same ticks as its UTC spelling, UTC out
    ({"interval": "10s", "anchor": "2024-05-01T12:00:03+02:00"}, ANCHOR, "2024-05-01T10:00:13"),
    ({"interval": "10s", "anchor": "2024-05-01T10:00:03Z"}, ANCHOR, "2024-05-01T10:00:13"),
    # a naive anchor is read as UTC, like `at`
    ({"interval": "10s", "anchor": datetime(2024, 5, 1, 10, 0, 3)}, ANCHOR, "2024-05-01T10:00:13"),
    # daily at 06:30 UTC; 7 minutes off the hour
    ({"interval": "1d", "anchor": "2024-01-01T06:30:00Z"}, "2024-05-01T07:00", "2024-05-02T06:30"),
    ({"interval": "1d", "anchor": "2030-01-01T06:30:00Z"}, "2024-05-01T06:29", "2024-05-01T06:30"),
    ({"interval": "7m", "anchor": "2024-01-01T00:00:00Z"}, "2024-01-01T00:00", "2024-01-01T00:07"),
    ({"interval": "7m", "anchor": "2024-01-01T00:00:00Z"}, "2023-12-31T23:59", "2024-01-01T00:00"),
    ({"interval": "7m", "anchor": "2024-01-01T00:00:00Z"}, "2023-12-31T23:53", "2024-01-01T00:00"),
    ({"interval": "7m", "anchor": "2024-01-01T00:00:00Z"}, "2023-12-31T23:52", "2023-12-31T23:53"),
    # sub-second grid
    (
        {"interval": "100ms", "anchor": "2024-01-01T00:00:00.025Z"},
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00.025",
    ),
    # anchor on the epoch grid == no anchor
    (
        {"interval": "30s", "anchor": "2024-05-01T00:00:00Z"},
        "2024-05-01T10:00:10",
        "2024-05-01T10:00:30",
    ),
    ({"interval": "30s"}, "2024-05-01T10:00:10", "2024-05-01T10:00:30"),
]


@pytest.mark.parametrize(("fields", "after", "expected"), NEXT_FIRE)
def test_next_fire_with_anchor(fields: dict[str, Any], after: str, expected: str) -> None:
    got = next_fire(sched(**fields), utc(after))
    assert got == utc(expected)
    assert got is not None and got.tzinfo is UTC


def test_anchors_spread_jobs_that_share_an_interval() -> None:
    after = utc("2024-05-01T10:00:00")
    plain = {next_fire(sched(interval="10s"), after) for _ in range(10)}
    spread = {
        next_fire(sched(interval="10s", anchor=f"2024-01-01T00:00:0{i}Z"), after) for i in range(10)
    }
    assert len(plain) == 1
    assert spread == {after + timedelta(seconds=i) for i in range(1, 11)}


def test_default_anchor_is_the_epoch() -> None:
    assert sched(interval="10s").anchor is None
    after = utc("2024-05-01T10:00:07")
    assert next_fire(sched(interval="10s"), after) == next_fire(
        sched(interval="10s", anchor=EPOCH), after
    )


# --- due_ticks -----------------------------------------------------------------------------

# anchor 10:00:20 in the *future*; ticks every minute at :20 before and after it
SINCE, NOW = utc("2024-05-01T09:50:00"), utc("2024-05-01T10:00:22")
LATE = [(utc(f"2024-05-01T09:5{m}:20"), CATCHUP) for m in range(10)]
ON_TIME = [(utc("2024-05-01T10:00:20"), SCHEDULE)]


@pytest.mark.parametrize(
    "anchor",
    [
        "2024-05-01T10:00:20Z",
        "2024-05-01T09:50:20Z",
        "1999-01-01T00:00:20Z",
        "2099-12-31T23:59:20Z",
    ],
)
@pytest.mark.parametrize(
    ("catchup", "limit", "ticks", "cut"),
    [
        ("none", 1000, ON_TIME, False),
        ("latest", 1000, LATE[-1:] + ON_TIME, False),
        ("all", 1000, LATE + ON_TIME, False),
        ("all", 10, LATE + ON_TIME, False),
        ("all", 3, LATE[-3:] + ON_TIME, True),
        ("all", 0, ON_TIME, True),
    ],
)
def test_due_ticks_policies_with_anchor(
    anchor: str, catchup: str, limit: int, ticks: list[tuple[datetime, str]], cut: bool
) -> None:
    s = sched(interval="1m", anchor=anchor, catchup=catchup)
    got = due_ticks(s, SINCE, NOW, limit=limit)
    assert got == DueTicks(ticks=ticks, cut=cut, next_after=utc("2024-05-01T10:00:20"))


def test_due_ticks_since_is_exclusive_on_an_anchored_tick() -> None:
    s = sched(interval="1m", anchor="2024-05-01T10:00:20Z", catchup="all")
    got = due_ticks(s, utc("2024-05-01T09:59:20"), utc("2024-05-01T10:00:21"))
    assert got.ticks == [(utc("2024-05-01T10:00:20"), SCHEDULE)]
    empty = due_ticks(s, utc("2024-05-01T10:00:20"), utc("2024-05-01T10:00:21"))
    assert empty.ticks == [] and empty.next_after == utc("2024-05-01T10:00:20")


# --- properties ----------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
intervals = st.integers(100, 10 * 86_400_000).map(lambda ms: timedelta(milliseconds=ms))


@given(anchor=instants, interval=intervals, after=instants)
def test_ticks_sit_on_the_anchor_grid(
    anchor: datetime, interval: timedelta, after: datetime
) -> None:
    s = Schedule(interval=interval, anchor=anchor)
    nxt = next_fire(s, after)
    assert nxt is not None and nxt.tzinfo is UTC
    assert after < nxt <= after + interval
    assert (nxt - anchor) % interval == timedelta(0)  # nxt == anchor + k * interval
    prev = prev_tick(s, after)
    assert after - interval < prev <= after
    assert (prev - anchor) % interval == timedelta(0)
    assert next_fire(s, prev) == prev + interval


@given(anchor=instants, interval=intervals, k=st.integers(-10_000, 10_000))
def test_shifting_the_anchor_by_whole_intervals_changes_nothing(
    anchor: datetime, interval: timedelta, k: int
) -> None:
    after = utc("2024-05-01T10:00:00")
    a = next_fire(Schedule(interval=interval, anchor=anchor), after)
    b = next_fire(Schedule(interval=interval, anchor=anchor + k * interval), after)
    assert a == b


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ({"cron": "* * * * *", "anchor": "2024-01-01T00:00:00Z"}, "interval schedules only"),
        (
            {"at": "2026-12-01T00:00:00Z", "anchor": "2024-01-01T00:00:00Z"},
            "interval schedules only",
        ),
        ({"anchor": "2024-01-01T00:00:00Z"}, "interval schedules only"),
        ({"interval": "10s", "anchor": "not a date"}, "datetime"),
        ({"interval": "10s", "anchor": "2024-13-01T00:00:00Z"}, "datetime"),
    ],
)
def test_anchor_errors_name_the_field(schedule: dict[str, Any], fragment: str) -> None:
    found = job_errors(schedule)
    assert any(at == "schedule.anchor" and fragment in m for at, m in found), found


def test_bad_interval_is_reported_without_a_spurious_anchor_error() -> None:
    found = job_errors({"interval": "50ms", "anchor": "2024-01-01T00:00:00Z"})
    assert [at for at, _ in found] == ["schedule.interval"], found


def test_naive_anchor_is_read_as_utc_like_at() -> None:
    s = sched(interval="10s", anchor="2024-01-01T00:00:03")
    assert s.anchor == utc("2024-01-01T00:00:03") and s.anchor.tzinfo is UTC
    assert sched(at="2024-01-01T00:00:03").at == s.anchor


def test_anchor_round_trips_and_stays_out_of_stored_when_unset() -> None:
    base = {
        "name": "orders",
        "source": {"url": "http://127.0.0.1:9/orders"},
        "destination": {"table": "orders"},
    }
    plain = parse_job({**base, "schedule": {"interval": "10s"}})
    assert "anchor" not in plain.to_stored()["schedule"]
    spec = parse_job(
        {**base, "schedule": {"interval": "10s", "anchor": "2024-01-01T00:00:03+02:00"}}
    )
    stored = spec.to_stored()
    assert parse_job(stored) == spec
    assert spec.schedule is not None and parse_job(stored).schedule == spec.schedule
