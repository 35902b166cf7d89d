"""A run that fails for good leaves no staging (a retried or refused one keeps it), and an
error raised behind the stage callback's transport reads as ours."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tg_actors.engine.sync import Stager
from tg_actors.errors import DestinationError
from tg_actors.jobs import parse_job
from tg_actors.store.duckdb import DuckStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckStore]:
    s = DuckStore(tmp_path / "drills.duckdb")
    yield s
    s.close()


def staged_run(store: DuckStore, minute: int) -> str:
    run_id = store.create_run("orders", T0.replace(minute=minute), "manual")
    assert run_id is not None
    store.update_run(run_id, state="running")
    store.stage_batch(run_id, pa.table({"id": [1, 2]}), {"page": 2}, 1)
    assert run_id in store.staged_run_ids() and store.checkpoint(run_id) is not None
    return run_id


def test_failing_for_good_drops_staging_and_checkpoint_with_the_state(store: DuckStore) -> None:
    run_id = staged_run(store, 0)
    store.fail_run(run_id, expect_state="running", error="boom", finished_at=T0)
    assert store.get_run(run_id)["state"] == "failed"  # type: ignore[index]
    assert store.get_run(run_id)["error"] == "boom"  # type: ignore[index]
    assert store.staged_run_ids() == [] and store.checkpoint(run_id) is None
    assert store.staged_rows(run_id) == 0


def test_a_retried_attempt_keeps_its_staging_to_resume(store: DuckStore) -> None:
    run_id = staged_run(store, 1)
    store.update_run(run_id, expect_state="running", state="retrying", error="boom")
    assert store.staged_run_ids() == [run_id]
    assert store.checkpoint(run_id) == {"checkpoint": {"page": 2}, "pages": 1, "rows": 2}


def test_update_run_never_drops_staging_only_fail_run_does(store: DuckStore) -> None:
    """The drop is an explicit operation: no state write drops staging as a side effect."""
    run_id = staged_run(store, 3)
    store.update_run(run_id, expect_state="running", state="failed", finished_at=T0)
    assert store.staged_run_ids() == [run_id] and store.checkpoint(run_id) is not None


def test_a_refused_state_change_drops_nothing(store: DuckStore) -> None:
    from tg_actors.errors import IllegalTransition

    run_id = staged_run(store, 2)
    with pytest.raises(IllegalTransition):  # it is not queued any more
        store.fail_run(run_id, expect_state="queued", finished_at=T0)
    assert store.staged_run_ids() == [run_id] and store.checkpoint(run_id) is not None


class Wrapped(Exception):
    """What Ray raises for an actor call that failed: ours is its `.cause`."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"ray::Database.stage_batch() (pid=1)\n  File ...\n{cause}")
        self.cause = cause


def test_an_error_behind_the_stage_transport_reads_as_ours() -> None:
    spec = parse_job(
        {
            "name": "orders",
            "source": {"url": "http://127.0.0.1:9/", "checkpoint_rows": 1},
            "destination": {"table": "orders"},
        }
    )
    ours = DestinationError("table orders: column amount is BIGINT ... but VARCHAR in this batch")

    async def stage(table: pa.Table, checkpoint: dict[str, Any] | None, pages: int) -> None:
        raise Wrapped(ours)

    async def attempt() -> None:
        stager = Stager(spec, stage, 0, 0, None)
        stager.add([{"id": 1}])
        await stager.flush({"page": 2})
        await stager.wait()

    with pytest.raises(DestinationError) as caught:
        asyncio.run(attempt())
    assert caught.value is ours and "ray::" not in str(caught.value)


def test_other_stage_errors_pass_unchanged() -> None:
    spec = parse_job(
        {
            "name": "orders",
            "source": {"url": "http://127.0.0.1:9/", "checkpoint_rows": 1},
            "destination": {"table": "orders"},
        }
    )

    async def stage(table: pa.Table, checkpoint: dict[str, Any] | None, pages: int) -> None:
        raise Wrapped(KeyError("not ours"))

    async def attempt() -> None:
        stager = Stager(spec, stage, 0, 0, None)
        stager.add([{"id": 1}])
        await stager.flush({"page": 2})
        await stager.wait()

    with pytest.raises(Wrapped):
        asyncio.run(attempt())
