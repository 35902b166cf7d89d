"""Issue 12 #15: leftover staging of closed runs is dropped, and tg.runs / tg.run_logs have a
retention. The store functions against a real DuckDB file with a stepped clock; the Database
actor's boot and periodic pass without Ray."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.kit.stepclock import T0, Clock
from tg_actors.store.duckdb import DuckStore

DAY = 86400.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckStore]:
    s = DuckStore(tmp_path / "retention.duckdb", clock=Clock())
    yield s
    s.close()


_ticks = iter(range(1, 1_000_000))


def run(
    store: DuckStore,
    job: str,
    *,
    state: str = "succeeded",
    finished: timedelta | None,
    trigger: str = "manual",
    queued: timedelta | None = None,
    logs: int = 2,
) -> str:
    """A run of `job` in `state`, finished `finished` before T0 (None: no finished_at),
    queued `queued` before T0 (default: just before it finished)."""
    scheduled = T0 - timedelta(days=400) + timedelta(minutes=next(_ticks))
    run_id = store.create_run(job, scheduled, trigger)
    assert run_id is not None
    at = queued if queued is not None else (finished or timedelta(0)) + timedelta(seconds=10)
    store.query("UPDATE tg.runs SET queued_at = ? WHERE run_id = ?", [T0 - at, run_id])
    fields: dict[str, Any] = {"state": state}
    if finished is not None:
        fields["finished_at"] = T0 - finished
    if state != "queued":
        store.update_run(run_id, **fields)
    store.add_logs([(run_id, T0 - at, "INFO", f"line {i}") for i in range(logs)])
    return run_id


def ids(store: DuckStore) -> set[str]:
    return {str(r[0]) for r in store.query("SELECT run_id FROM tg.runs")}


def log_count(store: DuckStore, run_id: str) -> int:
    return len(store.get_logs(run_id))


def test_finished_runs_past_retention_go_with_their_logs(store: DuckStore) -> None:
    old = run(store, "a", finished=timedelta(days=100))
    failed = run(store, "a", state="failed", finished=timedelta(days=95))
    cancelled = run(store, "a", state="cancelled", finished=timedelta(days=91))
    recent = run(store, "a", finished=timedelta(days=10))
    newest = run(store, "a", finished=timedelta(days=1))
    result = store.prune_history(90 * DAY, None)
    assert result == {"runs": 3, "logs": 6}
    assert ids(store) == {recent, newest}
    assert all(log_count(store, r) == 0 for r in (old, failed, cancelled))
    assert log_count(store, recent) == 2
    assert store.prune_history(90 * DAY, None) == {"runs": 0, "logs": 0}  # idempotent


def test_never_open_runs_nor_a_jobs_newest_run_nor_its_last_tick(store: DuckStore) -> None:
    only = run(store, "lonely", finished=timedelta(days=300))  # its job's newest: kept
    # a run open for ever so long (queued 200 days ago, say by a broken engine) is never
    # deleted, and neither is its job's newest finished run behind it
    stuck = run(store, "b", state="running", finished=None, queued=timedelta(days=200))
    queued = run(store, "b", state="queued", finished=None, queued=timedelta(days=150))
    old_b = run(store, "b", finished=timedelta(days=120), queued=timedelta(days=250))
    # job c: its last schedule tick is old, a manual run came later: the tick stays, or the
    # Scheduler's watermark (last_tick) would move back and replay ticks
    older_tick = run(store, "c", finished=timedelta(days=130), trigger="schedule")
    tick = run(store, "c", finished=timedelta(days=120), trigger="schedule")
    manual = run(store, "c", finished=timedelta(days=5))
    last_tick = store.last_tick("c")
    store.prune_history(90 * DAY, 30 * DAY)
    assert ids(store) == {only, stuck, queued, tick, manual}
    assert old_b not in ids(store) and older_tick not in ids(store)
    assert store.last_tick("c") == last_tick
    assert log_count(store, stuck) == 2 and log_count(store, queued) == 2  # open: logs kept
    assert log_count(store, only) == 2  # a job's newest run keeps its logs too
    assert log_count(store, tick) == 2  # the kept tick keeps its logs


def test_log_retention_keeps_the_run(store: DuckStore) -> None:
    older = run(store, "a", finished=timedelta(days=40))
    newer = run(store, "a", finished=timedelta(days=20))
    newest = run(store, "a", finished=timedelta(hours=1))
    assert store.prune_history(90 * DAY, 30 * DAY) == {"runs": 0, "logs": 2}
    assert ids(store) == {older, newer, newest}
    assert log_count(store, older) == 0 and log_count(store, newer) == 2
    assert store.get_run(older)["state"] == "succeeded"  # type: ignore[index]


def test_skipped_runs_without_finished_at_expire_by_queued_at(store: DuckStore) -> None:
    skipped = run(store, "a", state="skipped", finished=None, queued=timedelta(days=100))
    newest = run(store, "a", finished=timedelta(days=1))
    assert store.prune_history(90 * DAY, None)["runs"] == 1
    assert ids(store) == {newest} and skipped not in ids(store)


def test_none_keeps_everything_for_ever(store: DuckStore) -> None:
    for days in (1000, 500, 1):
        run(store, "a", finished=timedelta(days=days))
    assert store.prune_history(None, None) == {"runs": 0, "logs": 0}
    assert len(ids(store)) == 3


def test_an_expired_run_with_leftover_staging_loses_it(store: DuckStore) -> None:
    crashed = run(store, "a", state="running", finished=None, queued=timedelta(days=200))
    store.stage_batch(crashed, pa.table({"id": [1]}), {"p": 1}, 1)
    store.query(  # as a crash could leave it: closed, staging still there
        "UPDATE tg.runs SET state = 'failed', finished_at = ? WHERE run_id = ?",
        [T0 - timedelta(days=199), crashed],
    )
    run(store, "a", finished=timedelta(days=1))
    store.prune_history(90 * DAY, None)
    assert crashed not in ids(store)
    assert store.staged_run_ids() == [] and store.checkpoint(crashed) is None


# -- staging of closed runs ----------------------------------------------------------------


def staged(store: DuckStore, job: str, minute: int, *, state: str = "running") -> str:
    run_id = store.create_run(job, T0 + timedelta(minutes=minute), "manual")
    assert run_id is not None
    store.update_run(run_id, state="running")
    store.stage_batch(run_id, pa.table({"id": [minute]}), {"page": 2}, 1)
    if state == "retrying":
        store.update_run(run_id, state="retrying")
    return run_id


def test_staging_of_runs_that_are_not_open_is_dropped(store: DuckStore) -> None:
    running = staged(store, "a", 0)
    retrying = staged(store, "a", 1, state="retrying")
    # cancelled before an engine picked the retry up (or by its job's deletion): the
    # cancel marks the run, nothing drops what its first attempt staged
    cancelled = staged(store, "a", 2, state="retrying")
    assert store.cancel_run(cancelled)
    finished = staged(store, "a", 3)
    store.query("UPDATE tg.runs SET state = 'succeeded' WHERE run_id = ?", [finished])
    ghost = staged(store, "a", 4)
    store.query("DELETE FROM tg.runs WHERE run_id = ?", [ghost])  # no row any more
    assert store.discard_closed_staging() == 3
    assert store.staged_run_ids() == sorted([running, retrying])
    assert store.checkpoint(running) is not None and store.checkpoint(retrying) is not None
    assert store.checkpoint(cancelled) is None and store.staged_rows(cancelled) == 0
    assert store.discard_closed_staging() == 0


# -- the Database actor: at boot and every few minutes --------------------------------------


def closed_with_staging(path: Path) -> tuple[str, str]:
    """A file holding a cancelled run with staging and an open one with staging."""
    with DuckStore(path, clock=Clock()) as s:
        open_run = staged(s, "a", 0)
        cancelled = staged(s, "a", 1, state="retrying")
        assert s.cancel_run(cancelled)
    return open_run, cancelled


async def test_the_database_actor_drops_closed_staging_at_boot(tmp_path: Path) -> None:
    from tg_actors.store.actor import Database

    path = tmp_path / "boot.duckdb"
    open_run, cancelled = closed_with_staging(path)
    db = Database(str(path), housekeeping_seconds=3600.0)
    try:
        await db.start()
        assert await db.staged_run_ids() == [open_run]  # type: ignore[attr-defined]
        assert await db.checkpoint(cancelled) is None  # type: ignore[attr-defined]
    finally:
        await db.close()


class Steps:
    """The housekeeping loop's sleep: records each wait, tells the test it is waiting, and
    returns when the test lets the period pass."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.go = asyncio.Queue[None]()
        self.sleeping = asyncio.Queue[int]()  # the number of the wait begun

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.sleeping.put_nowait(len(self.waits))
        await self.go.get()


async def test_the_database_actor_keeps_house_periodically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tg_actors.store.actor import Database

    monkeypatch.setenv("TG_RUN_RETENTION", "90d")
    monkeypatch.setenv("TG_LOG_RETENTION", "30d")
    path = tmp_path / "loop.duckdb"
    now = datetime.now(T0.tzinfo)
    with DuckStore(path) as s:  # history relative to the real now the actor's store reads
        old = s.create_run("a", now - timedelta(days=120), "manual")
        new = s.create_run("a", now - timedelta(days=1), "manual")
        assert old is not None and new is not None
        s.update_run(old, state="succeeded", finished_at=now - timedelta(days=100))
        s.update_run(new, state="succeeded", finished_at=now - timedelta(days=1))
        s.query("UPDATE tg.runs SET queued_at = scheduled_for")
    steps = Steps()
    db = Database(str(path), housekeeping_seconds=300.0, sleep=steps)
    try:
        await db.start()
        assert await steps.sleeping.get() == 1  # booted; the loop waits for its first period
        assert steps.waits == [300.0]
        assert {r["run_id"] for r in await db.list_runs()} == {old, new}  # type: ignore[attr-defined]
        # meanwhile a run is cancelled with staging left over
        cancelled = await db.create_run("b", now, "manual")  # type: ignore[attr-defined]
        await db.update_run(cancelled, state="running")  # type: ignore[attr-defined]
        table = pa.table({"id": [1]})
        await db.stage_batch(cancelled, table, {"page": 2}, 1)  # type: ignore[attr-defined]
        assert await db.cancel_run(cancelled)  # type: ignore[attr-defined]
        steps.go.put_nowait(None)  # the period passes: one housekeeping pass, then a wait
        assert await steps.sleeping.get() == 2
        assert {r["run_id"] for r in await db.list_runs()} == {new, cancelled}  # type: ignore[attr-defined]
        assert await db.staged_run_ids() == []  # type: ignore[attr-defined]
        assert db.housekeeping_passes == 1
    finally:
        await db.close()


def test_retention_settings() -> None:
    from tg_actors.settings import Settings

    s = Settings()
    assert (s.run_retention, s.log_retention) == (90 * DAY, 30 * DAY)
    forever = Settings(run_retention="0", log_retention="none")
    assert forever.run_retention is None and forever.log_retention is None
    assert Settings(run_retention="12h").run_retention == 12 * 3600.0
    env = Settings(run_retention="none", log_retention="7d").engine_env()
    assert (env["TG_RUN_RETENTION"], env["TG_LOG_RETENTION"]) == ("none", "604800")
