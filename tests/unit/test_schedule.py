from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tg_actors.jobs import Schedule
from tg_actors.scheduler.schedule import (
    CATCHUP,
    SCHEDULE,
    DueTicks,
    apply_jitter,
    due_ticks,
    next_fire,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def sched(**fields: Any) -> Schedule:
    return Schedule.model_validate(fields)


def utc(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def fires(schedule: Schedule, after: datetime, n: int) -> list[datetime]:
    out: list[datetime] = []
    for _ in range(n):
        nxt = next_fire(schedule, after)
        assert nxt is not None
        out.append(nxt)
        after = nxt
    return out


# --- next_fire -----------------------------------------------------------------------------

NEXT_FIRE = [
    # interval: anchored at the epoch, strictly after
    ({"interval": "30s"}, "2024-05-01T10:00:10", "2024-05-01T10:00:30"),
    ({"interval": "30s"}, "2024-05-01T10:00:30", "2024-05-01T10:01:00"),
    ({"interval": "7m"}, "1970-01-01T00:00:00", "1970-01-01T00:07:00"),
    ({"interval": "7m"}, "2024-01-01T00:00:00", "2024-01-01T00:01:00"),  # 28_401_120 min = 7k+6
    ({"interval": "1d", "timezone": "Europe/Berlin"}, "2024-03-31T05:00:00", "2024-04-01T00:00:00"),
    ({"interval": "100ms"}, "2024-01-01T00:00:00.050000", "2024-01-01T00:00:00.100000"),
    ({"interval": "30s"}, "2024-05-01T12:00:10+02:00", "2024-05-01T10:00:30"),  # other offset in
    # cron in UTC, 5 and 6 fields (seconds first)
    ({"cron": "*/15 * * * *"}, "2024-05-01T10:07:00", "2024-05-01T10:15:00"),
    ({"cron": "*/15 * * * *"}, "2024-05-01T10:15:00", "2024-05-01T10:30:00"),
    ({"cron": "*/15 * * * *"}, "2024-05-01T10:14:59.999999", "2024-05-01T10:15:00"),
    ({"cron": "30 */5 * * * *"}, "2024-05-01T10:00:00", "2024-05-01T10:00:30"),
    ({"cron": "30 */5 * * * *"}, "2024-05-01T10:00:30", "2024-05-01T10:05:30"),
    ({"cron": "*/20 * * * * *"}, "2024-05-01T10:00:59", "2024-05-01T10:01:00"),
    # cron in a zone: 09:00 Berlin is 08:00Z in winter, 07:00Z in summer
    ({"cron": "0 9 * * *", "timezone": "Europe/Berlin"}, "2024-01-10T12:00", "2024-01-11T08:00"),
    ({"cron": "0 9 * * *", "timezone": "Europe/Berlin"}, "2024-07-10T12:00", "2024-07-11T07:00"),
    # spring-forward: a skipped local time fires once at the end of the gap (03:00 local)
    ({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}, "2024-03-30T12:00", "2024-03-31T01:00"),
    ({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}, "2024-03-31T01:00", "2024-04-01T00:30"),
    (
        {"cron": "30 2 * * *", "timezone": "America/New_York"},
        "2024-03-09T12:00",
        "2024-03-10T07:00",
    ),
    (
        {"cron": "*/20 * * * * *", "timezone": "Europe/Berlin"},
        "2024-03-31T00:59:50",
        "2024-03-31T01:00",
    ),
    (
        {"cron": "*/20 * * * * *", "timezone": "Europe/Berlin"},
        "2024-03-31T01:00",
        "2024-03-31T01:00:20",
    ),
    # fall-back: a repeated local time fires once, at its first occurrence
    ({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}, "2024-10-26T12:00", "2024-10-27T00:30"),
    ({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}, "2024-10-27T00:30", "2024-10-28T01:30"),
    (
        {"cron": "30 1 * * *", "timezone": "America/New_York"},
        "2024-11-02T12:00",
        "2024-11-03T05:30",
    ),
    (
        {"cron": "30 1 * * *", "timezone": "America/New_York"},
        "2024-11-03T05:30",
        "2024-11-04T06:30",
    ),
    # `after` inside the second pass of the repeated hour (02:10 CET): next is 03:00 CET
    ({"cron": "*/30 * * * *", "timezone": "Europe/Berlin"}, "2024-10-27T01:10", "2024-10-27T02:00"),
    # at
    ({"at": "2026-12-01T00:00:00Z"}, "2026-11-30T23:59:59", "2026-12-01T00:00:00"),
    ({"at": "2026-12-01T01:00:00+01:00"}, "2026-01-01T00:00", "2026-12-01T00:00:00"),
]


@pytest.mark.parametrize(("fields", "after", "expected"), NEXT_FIRE)
def test_next_fire(fields: dict[str, Any], after: str, expected: str) -> None:
    got = next_fire(sched(**fields), utc(after))
    assert got == utc(expected)
    assert got is not None and got.tzinfo is UTC


@pytest.mark.parametrize(
    ("fields", "after"),
    [
        ({"at": "2026-12-01T00:00:00Z"}, "2026-12-01T00:00:00"),  # strictly after
        ({"at": "2026-12-01T00:00:00Z"}, "2027-01-01T00:00:00"),
        ({"cron": "0 0 30 2 *"}, "2024-01-01T00:00:00"),  # 30 February never comes
    ],
)
def test_next_fire_never(fields: dict[str, Any], after: str) -> None:
    assert next_fire(sched(**fields), utc(after)) is None


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_fire(sched(interval="1m"), datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        due_ticks(sched(interval="1m"), datetime(2024, 1, 1), utc("2024-01-02T00:00"))


def test_interval_ticks_survive_a_restart() -> None:
    s = sched(interval="45s")
    run_a = fires(s, utc("2024-05-01T10:00:00"), 20)
    restarted = next_fire(s, utc("2024-05-01T10:03:17.5"))  # a "process" started mid-way
    assert restarted in run_a


def test_spring_forward_collapses_skipped_times_into_one_fire() -> None:
    s = sched(cron="*/30 * * * *", timezone="Europe/Berlin")
    local = [f.astimezone(BERLIN).strftime("%H:%M%z") for f in fires(s, utc("2024-03-31T00:00"), 4)]
    # 02:00 and 02:30 do not exist: both become 03:00, which fires once
    assert local == ["01:30+0100", "03:00+0200", "03:30+0200", "04:00+0200"]


def test_fall_back_repeated_hour_fires_once() -> None:
    s = sched(cron="*/30 * * * *", timezone="Europe/Berlin")
    local = [f.astimezone(BERLIN).strftime("%H:%M%z") for f in fires(s, utc("2024-10-26T23:45"), 4)]
    assert local == ["02:00+0200", "02:30+0200", "03:00+0100", "03:30+0100"]


def test_two_wall_times_in_one_gap_fire_once() -> None:
    s = sched(cron="0 2,3 * * *", timezone="Europe/Berlin")
    assert fires(s, utc("2024-03-30T12:00"), 3) == [
        utc("2024-03-31T01:00"),  # 02:00 (skipped) and 03:00 are the same instant
        utc("2024-04-01T00:00"),
        utc("2024-04-01T01:00"),
    ]


DST_DAYS = [
    (BERLIN, datetime(2024, 3, 28, tzinfo=UTC)),
    (BERLIN, datetime(2024, 10, 24, tzinfo=UTC)),
    (NEW_YORK, datetime(2024, 3, 7, tzinfo=UTC)),
    (NEW_YORK, datetime(2024, 10, 31, tzinfo=UTC)),
]


@settings(max_examples=150, deadline=None)
@given(
    case=st.sampled_from(DST_DAYS),
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 1, 15, 30, 59]),
    offset_h=st.integers(0, 24),
)
def test_daily_cron_across_dst(
    case: tuple[ZoneInfo, datetime], hour: int, minute: int, offset_h: int
) -> None:
    zone, start = case
    s = sched(cron=f"{minute} {hour} * * *", timezone=str(zone))
    got = fires(s, start + timedelta(hours=offset_h), 8)
    assert all(a < b for a, b in zip(got, got[1:], strict=False))
    walls = [f.astimezone(zone).replace(tzinfo=None) for f in got]
    assert len(set(walls)) == len(walls)  # no local wall-clock time fires twice
    assert len({w.date() for w in walls}) == len(walls)  # once per local day
    for wall in walls:
        # on its time, or pushed forward by a spring-forward gap (at most to the gap's end)
        target = wall.replace(hour=hour, minute=minute)
        assert timedelta(0) <= wall - target <= timedelta(hours=1)


@settings(max_examples=100, deadline=None)
@given(
    expr=st.sampled_from(["*/30 * * * *", "15 1,2,3 * * *", "0 */7 * * * *", "30 2 * * 0"]),
    case=st.sampled_from(DST_DAYS),
    offset_min=st.integers(0, 6 * 24 * 60),
    span_min=st.integers(0, 36 * 60),
)
def test_backward_walk_matches_forward(
    expr: str, case: tuple[ZoneInfo, datetime], offset_min: int, span_min: int
) -> None:
    zone, start = case
    s = sched(cron=expr, timezone=str(zone), catchup="all")
    since = start + timedelta(minutes=offset_min)
    now = since + timedelta(minutes=span_min, seconds=17)
    forward: list[datetime] = []
    nxt = next_fire(s, since)
    while nxt is not None and nxt <= now:
        forward.append(nxt)
        nxt = next_fire(s, nxt)
    due = due_ticks(s, since, now, limit=10_000)
    assert [t for t, _ in due.ticks] == forward
    assert due.next_after == (forward[-1] if forward else since)


# --- due_ticks -----------------------------------------------------------------------------

SINCE, NOW = utc("2024-05-01T10:00"), utc("2024-05-01T10:10:02")  # ticks 10:01..10:10
LATE = [(utc(f"2024-05-01T10:0{m}"), CATCHUP) for m in range(1, 10)]
ON_TIME = [(utc("2024-05-01T10:10"), SCHEDULE)]


@pytest.mark.parametrize(
    ("catchup", "limit", "ticks", "cut"),
    [
        ("none", 1000, ON_TIME, False),
        ("latest", 1000, LATE[-1:] + ON_TIME, False),
        ("all", 1000, LATE + ON_TIME, False),
        ("all", 9, LATE + ON_TIME, False),
        ("all", 3, LATE[-3:] + ON_TIME, True),
        ("all", 0, ON_TIME, True),
    ],
)
def test_due_ticks_policies(
    catchup: str, limit: int, ticks: list[tuple[datetime, str]], cut: bool
) -> None:
    got = due_ticks(sched(interval="1m", catchup=catchup), SINCE, NOW, limit=limit)
    assert got == DueTicks(ticks=ticks, cut=cut, next_after=utc("2024-05-01T10:10"))


@pytest.mark.parametrize(
    ("since", "now", "grace", "ticks", "next_after"),
    [
        ("10:00:10", "10:00:50", 5, [], "10:00:10"),  # no tick in between
        ("10:00:00", "10:00:00", 5, [], "10:00:00"),  # empty window; `since` is exclusive
        ("10:00:00", "10:01:05", 5, [("10:01:00", SCHEDULE)], "10:01:00"),  # exactly grace
        ("10:00:00", "10:01:06", 5, [], "10:01:00"),  # late and dropped (none), still watermark
        ("10:00:00", "10:03:00", 300, [(f"10:0{m}:00", SCHEDULE) for m in (1, 2, 3)], "10:03:00"),
    ],
)
def test_due_ticks_edges(
    since: str, now: str, grace: int, ticks: list[tuple[str, str]], next_after: str
) -> None:
    day = "2024-05-01T"
    got = due_ticks(
        sched(interval="1m", catchup="none"),
        utc(day + since),
        utc(day + now),
        grace=timedelta(seconds=grace),
    )
    assert got.ticks == [(utc(day + t), kind) for t, kind in ticks]
    assert got.next_after == utc(day + next_after)
    assert not got.cut


def test_due_ticks_at() -> None:
    s = sched(at="2024-05-01T10:00:00Z", catchup="latest")
    got = due_ticks(s, utc("2024-05-01T09:00"), utc("2024-05-01T11:00"))
    assert got.ticks == [(utc("2024-05-01T10:00"), CATCHUP)]
    assert due_ticks(s, utc("2024-05-01T10:00"), utc("2024-05-01T11:00")).ticks == []


def test_due_ticks_cron_across_fall_back() -> None:
    s = sched(cron="30 2 * * *", timezone="Europe/Berlin", catchup="all")
    got = due_ticks(s, utc("2024-10-26T00:00"), utc("2024-10-29T12:00"))
    assert [t for t, _ in got.ticks] == [
        utc("2024-10-26T00:30"),
        utc("2024-10-27T00:30"),
        utc("2024-10-28T01:30"),
        utc("2024-10-29T01:30"),
    ]
    assert {kind for _, kind in got.ticks} == {CATCHUP}


@pytest.mark.parametrize("catchup", ["none", "latest", "all"])
def test_tiny_interval_over_long_downtime_is_fast(catchup: str) -> None:
    s = sched(interval="100ms", catchup=catchup)
    now = utc("2024-05-31T00:00")
    started = time.perf_counter()
    got = due_ticks(s, now - timedelta(days=30), now)
    assert time.perf_counter() - started < 0.5
    on_time = [t for t, kind in got.ticks if kind == SCHEDULE]
    late = [t for t, kind in got.ticks if kind == CATCHUP]
    assert len(on_time) == 51  # now-5s .. now, every 100ms
    assert len(late) == {"none": 0, "latest": 1, "all": 1000}[catchup]
    assert got.cut is (catchup == "all")
    assert got.next_after == now
    assert [t for t, _ in got.ticks] == sorted(t for t, _ in got.ticks)


@pytest.mark.parametrize("catchup", ["none", "latest", "all"])
def test_per_second_cron_over_long_downtime_is_fast(catchup: str) -> None:
    s = sched(cron="* * * * * *", timezone="Europe/Berlin", catchup=catchup)
    now = utc("2024-05-31T00:00:00.5")
    started = time.perf_counter()
    got = due_ticks(s, now - timedelta(days=30), now, limit=200)
    assert time.perf_counter() - started < 2.0
    assert len(got.ticks) == 5 + {"none": 0, "latest": 1, "all": 200}[catchup]
    assert got.next_after == utc("2024-05-31T00:00:00")


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        due_ticks(sched(interval="1m"), SINCE, NOW, limit=-1)


# --- apply_jitter --------------------------------------------------------------------------


def test_no_jitter_is_identity() -> None:
    tick = utc("2024-05-01T10:00")
    assert apply_jitter(tick, timedelta(0), random.Random(1)) == tick


def test_jitter_is_reproducible_with_a_seed() -> None:
    tick, jitter = utc("2024-05-01T10:00"), timedelta(seconds=30)
    assert apply_jitter(tick, jitter, random.Random(7)) == apply_jitter(
        tick, jitter, random.Random(7)
    )


@given(seed=st.integers(0, 2**32), jitter_ms=st.integers(1, 10**8))
def test_jitter_stays_in_bounds(seed: int, jitter_ms: int) -> None:
    tick, jitter = utc("2024-05-01T10:00"), timedelta(milliseconds=jitter_ms)
    assert tick <= apply_jitter(tick, jitter, random.Random(seed)) <= tick + jitter


@pytest.mark.parametrize(
    ("since", "now", "expected"),
    [
        # `now` in the second pass of the repeated hour (02:10 CET): the first pass fired
        (
            "2024-10-26T23:00",
            "2024-10-27T01:10",
            ["2024-10-26T23:30", "2024-10-27T00:00", "2024-10-27T00:30"],
        ),
        # `now` just after the spring-forward gap: 02:00 and 02:30 collapsed into 03:00
        (
            "2024-03-31T00:00",
            "2024-03-31T01:40",
            ["2024-03-31T00:30", "2024-03-31T01:00", "2024-03-31T01:30"],
        ),
    ],
)
def test_due_ticks_cron_ending_inside_dst_change(since: str, now: str, expected: list[str]) -> None:
    s = sched(cron="*/30 * * * *", timezone="Europe/Berlin", catchup="all")
    got = due_ticks(s, utc(since), utc(now), grace=timedelta(0))
    assert [t for t, _ in got.ticks] == [utc(e) for e in expected]
