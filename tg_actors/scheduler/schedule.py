"""When a `Schedule` fires. Pure: every instant is passed in; aware datetimes in, UTC out.

interval: ticks sit at `anchor + k * interval` for every integer k (negative too, so the
    anchor may lie in the past or the future); `schedule.anchor` defaults to the epoch,
    1970-01-01T00:00:00Z. Anchored, not relative to the start of the process, so ticks never
    drift and a restart lands on the same ticks. `timezone` plays no part.
cron: 5 fields, or 6 with seconds first, read on the wall clock of `schedule.timezone`.
at: fires once, at `at`.

DST rule for cron (no skipped and no doubled run):
- A local time skipped by spring-forward fires once, at the first instant after the gap:
  `30 2 * * *` in Europe/Berlin on 2024-03-31 fires at 03:00 CEST. Several skipped wall
  times (`*/15` between 02:00 and 02:45) collapse into that one fire.
- A local time repeated at fall-back fires once, at its first occurrence (fold=0): `30 2 * * *`
  in Europe/Berlin on 2024-10-27 fires at 02:30 CEST and not again at 02:30 CET. The repeated
  hour produces no fires of its own.
Hence fire times strictly increase and no local wall-clock time fires twice.

Why we do not hand croniter aware datetimes: croniter 7.0 fires the repeated hour twice at
fall-back (02:30 CEST and again 02:30 CET) and mislabels `fold` when iterating backwards
across a gap. Instead croniter iterates *naive* wall-clock times (pure calendar arithmetic,
independent of any zone or the TZ variable) and `_wall_to_instant` maps each to an instant.
That map is monotone (non-decreasing), which is what makes the filtering below correct.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from tg_actors.jobs import Catchup, Schedule
from tg_actors.runstate import Trigger

__all__ = ["CATCHUP", "EPOCH", "SCHEDULE", "DueTicks", "apply_jitter", "due_ticks", "next_fire"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SCHEDULE = Trigger.SCHEDULE  # trigger kind of a tick fired on time (within grace)
CATCHUP = Trigger.CATCHUP  # trigger kind of a tick missed while down, fired late
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class DueTicks:
    """What `due_ticks` found between a watermark and now."""

    ticks: list[tuple[datetime, Trigger]]
    """Ticks to run, oldest first, each with its trigger kind (SCHEDULE or CATCHUP)."""
    cut: bool
    """True when `catchup: all` had more late ticks than `limit` (the oldest were dropped)."""
    next_after: datetime
    """The newest tick considered (kept or dropped), else `since`: the new watermark."""


def next_fire(schedule: Schedule, after: datetime) -> datetime | None:
    """The first fire time strictly after `after`, in UTC; None when it never fires again."""
    _require_aware(after, "after")
    return next(_ascending(schedule, after), None)


def due_ticks(
    schedule: Schedule,
    since: datetime,
    now: datetime,
    *,
    grace: timedelta = timedelta(seconds=5),
    limit: int = 1000,
    up_since: datetime | None = None,
) -> DueTicks:
    """Ticks t with since < t <= now, filtered by `schedule.catchup`.

    A tick with now - t <= grace, or at or after `up_since` (the Scheduler was up when it
    fell, so it was not missed however late it is handled now: a busy loop, a Database
    restart), is on time (SCHEDULE) and always kept. Older ones are late
    (CATCHUP): NONE drops them, LATEST keeps the newest one, ALL keeps the newest `limit`.
    Walks backwards from `now`, so the work is bounded by the ticks kept (+1), never by the
    length of the downtime: a 100ms interval after 30 days down costs ~1000 steps.
    """
    _require_aware(since, "since")
    _require_aware(now, "now")
    if limit < 0:
        raise ValueError("limit must be >= 0")
    on_time: list[datetime] = []
    late: list[datetime] = []
    newest: datetime | None = None
    cut = False
    for tick in _descending(schedule, now):
        if tick <= since:
            break
        if newest is None:
            newest = tick
        if now - tick <= grace or (up_since is not None and tick >= up_since):
            on_time.append(tick)
            continue
        # descending: every tick from here on is late too
        if schedule.catchup is Catchup.NONE:
            break
        if schedule.catchup is Catchup.LATEST:
            late.append(tick)
            break
        if len(late) == limit:
            cut = True
            break
        late.append(tick)
    ticks = [(t, CATCHUP) for t in reversed(late)] + [(t, SCHEDULE) for t in reversed(on_time)]
    return DueTicks(ticks=ticks, cut=cut, next_after=since if newest is None else newest)


def apply_jitter(tick: datetime, jitter: timedelta, rng: random.Random) -> datetime:
    """`tick` delayed by a uniform random amount in [0, jitter]; the RNG is injected for tests."""
    if jitter <= timedelta(0):
        return tick
    return tick + timedelta(seconds=rng.uniform(0.0, jitter.total_seconds()))


# --- iteration ---------------------------------------------------------------------------


def _ascending(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after `after`, oldest first."""
    if schedule.interval is not None:
        origin = _anchor(schedule)
        k = (after - origin) // schedule.interval + 1  # exact: integer microseconds, floored
        while True:
            yield origin + k * schedule.interval
            k += 1
    elif schedule.cron is not None:
        yield from _cron_ascending(schedule.cron, ZoneInfo(schedule.timezone), after)
    elif schedule.at is not None and schedule.at > after:
        yield schedule.at.astimezone(UTC)


def _descending(schedule: Schedule, before: datetime) -> Iterator[datetime]:
    """Fire times at or before `before`, newest first."""
    if schedule.interval is not None:
        origin = _anchor(schedule)
        k = (before - origin) // schedule.interval
        while True:
            yield origin + k * schedule.interval
            k -= 1
    elif schedule.cron is not None:
        yield from _cron_descending(schedule.cron, ZoneInfo(schedule.timezone), before)
    elif schedule.at is not None and schedule.at <= before:
        yield schedule.at.astimezone(UTC)


def _anchor(schedule: Schedule) -> datetime:
    """The instant interval ticks are counted from, in UTC (so ticks come out in UTC)."""
    return EPOCH if schedule.anchor is None else schedule.anchor.astimezone(UTC)


def _cron_ascending(expr: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    wall, window_end = _wall_of(after, zone)
    # after lies in the second pass of a repeated hour: every wall time before the window's
    # end maps to its first pass (already behind us), so start at the end
    start = wall if window_end is None else max(wall, window_end - _US)
    it = croniter(expr, start, second_at_beginning=True)  # get_next is strictly after start
    last = after
    while True:
        try:
            instant = _wall_to_instant(it.get_next(datetime), zone)
        except CroniterBadDateError:  # e.g. `0 0 30 2 *`: no such date
            return
        if instant > last:  # drops the second pass and wall times collapsed into a gap's end
            last = instant
            yield instant


def _cron_descending(expr: str, zone: ZoneInfo, before: datetime) -> Iterator[datetime]:
    wall, window_end = _wall_of(before, zone)
    # get_prev is strictly before start: +1us makes `wall` itself a candidate
    start = wall + _US if window_end is None else window_end
    it = croniter(expr, start, second_at_beginning=True)
    last = before + _US
    while True:
        try:
            instant = _wall_to_instant(it.get_prev(datetime), zone)
        except CroniterBadDateError:
            return
        if instant < last:
            last = instant
            yield instant


# --- wall clock <-> instant --------------------------------------------------------------


def _wall_to_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """Map a naive local time to the UTC instant it fires at, by the DST rule above."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)  # fold=0: the first occurrence
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # in a gap both folds land on either side of the transition; fire when the gap ends
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return _transition(min(first, second), max(first, second), zone)


def _wall_of(instant: datetime, zone: ZoneInfo) -> tuple[datetime, datetime | None]:
    """The naive wall time of `instant`, and, when `instant` is in the second pass of a
    repeated hour, the naive wall time at which that repeated window ends."""
    local = instant.astimezone(zone)
    wall = local.replace(tzinfo=None)
    if not local.fold:
        return wall, None
    first_pass = local.replace(fold=0)
    offset_before = first_pass.utcoffset()
    if offset_before is None or offset_before == local.utcoffset():
        return wall, None  # fold set but not ambiguous: treat as a plain time
    switch = _transition(first_pass.astimezone(UTC), instant.astimezone(UTC), zone)
    # repeated wall times are [switch + new offset, switch + old offset)
    return wall, switch.replace(tzinfo=None) + offset_before


def _transition(lo: datetime, hi: datetime, zone: ZoneInfo) -> datetime:
    """The first whole-second instant in (lo, hi] whose UTC offset differs from lo's.

    zoneinfo hides its transition table, so bisect; offsets only change on whole seconds.
    """
    old = lo.astimezone(zone).utcoffset()
    a, b = math.floor(lo.timestamp()), math.ceil(hi.timestamp())
    while b - a > 1:
        mid = (a + b) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == old:
            a = mid
        else:
            b = mid
    return datetime.fromtimestamp(b, UTC)


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {value.isoformat()}")
