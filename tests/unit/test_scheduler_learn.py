"""A job the Scheduler has not heard of yet (its JobUpserted still on the config topic, as when
`tg run` starts the Scheduler while the ConfigManager loads the job files) is read from DuckDB
when it is triggered, on a stepped clock (tests/kit/stepped.py: the real Scheduler and
DuckStore, no Ray): the run is created and runs; a job DuckDB does not have either is still
JobNotFound; refresh learns it the same way, backfill refuses an unknown one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.kit.stepped import T0, SteppedSystem
from tg_actors.errors import JobNotFound
from tg_actors.runstate import RunState


def job(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"url": "http://127.0.0.1:9/x"},
        "destination": {"table": name},
    }


async def test_a_job_stored_after_the_boot_is_read_from_duckdb_when_triggered() -> None:
    system = SteppedSystem([], run_steps=2)
    await system.start()  # booted with no job at all
    system.store.upsert_job("late", job("late"), "file")  # its message not delivered
    assert system.scheduler is not None
    run_id = await system.scheduler.trigger("late")
    await system.until(
        "the run to succeed",
        lambda: [r["state"] for r in system.runs("late")] == [RunState.SUCCEEDED],
        40,
    )
    assert [r["run_id"] for r in system.runs("late")] == [run_id]
    with pytest.raises(JobNotFound):
        await system.scheduler.trigger("never_stored")


async def test_refresh_learns_a_job_the_same_way_and_backfill_refuses_an_unknown_one() -> None:
    system = SteppedSystem([], run_steps=2)
    await system.start()
    system.store.upsert_job("full", job("full"), "file")
    assert system.scheduler is not None
    await system.scheduler.refresh("full")
    assert [r["trigger"] for r in system.runs("full")] == ["refresh"]
    with pytest.raises(JobNotFound):
        await system.scheduler.backfill("never_stored", T0, T0 + timedelta(days=1))
