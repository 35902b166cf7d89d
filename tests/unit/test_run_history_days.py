"""Issue 19 #4: TG_RUN_HISTORY_DAYS prunes old tg.runs / tg.run_logs rows and keeps open and
newest runs: the Settings the environment gives, applied as the Database actor applies them
(Settings.engine_env -> TG_RUN_RETENTION -> DuckStore.prune_history), on a real DuckDB file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.kit.stepclock import Clock
from tests.unit.test_retention import ids, log_count, run
from tg_actors.settings import Settings, retention_seconds
from tg_actors.store.duckdb import DuckStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckStore]:
    s = DuckStore(tmp_path / "history.duckdb", clock=Clock())
    yield s
    s.close()


def retention_the_database_reads(settings: Settings) -> float | None:
    """What the Database actor makes of the TG_RUN_RETENTION it is given (store/actor.py)."""
    value = retention_seconds(settings.engine_env()["TG_RUN_RETENTION"])
    assert value is None or isinstance(value, float | int)
    return None if value is None else float(value)


def test_run_history_days_prunes_old_runs_and_keeps_open_and_newest(
    store: DuckStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("TG_RUN_RETENTION", "365d")  # also set: TG_RUN_HISTORY_DAYS wins
    monkeypatch.setenv("TG_RUN_HISTORY_DAYS", "7")
    settings = Settings()
    old = run(store, "a", finished=timedelta(days=30))
    failed = run(store, "a", state="failed", finished=timedelta(days=8))
    recent = run(store, "a", finished=timedelta(days=6))
    open_run = run(store, "b", state="running", finished=None, queued=timedelta(days=60))
    lonely = run(store, "c", finished=timedelta(days=100))  # job c's newest run
    result = store.prune_history(retention_the_database_reads(settings), None)
    assert result == {"runs": 2, "logs": 4}
    assert ids(store) == {recent, open_run, lonely}
    assert log_count(store, old) == 0 and log_count(store, failed) == 0
    assert log_count(store, recent) == 2 and log_count(store, open_run) == 2


def test_run_history_days_zero_keeps_forever(
    store: DuckStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TG_RUN_HISTORY_DAYS", "0")
    monkeypatch.delenv("TG_RUN_RETENTION", raising=False)
    for days in (1000, 10, 1):
        run(store, "a", finished=timedelta(days=days))
    assert retention_the_database_reads(Settings()) is None
    assert store.prune_history(None, None) == {"runs": 0, "logs": 0}
    assert len(ids(store)) == 3
