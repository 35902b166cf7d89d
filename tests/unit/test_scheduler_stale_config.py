"""A config message that arrives late (reordered or duplicated by the broker) never undoes a
newer change: the Scheduler applies the job as DuckDB holds it when the message comes, on a
stepped clock (tests/kit/stepped.py: the real Scheduler and DuckStore, no Ray). Found by the
fault simulation (seed 218 of 240): a resume delivered after the pause that followed it fired
a tick of a paused job."""

from __future__ import annotations

from typing import Any

from tests.kit.stepped import SteppedSystem
from tg_actors.messages import TOPIC_CONFIG, JobDeleted, JobPauseChanged, JobUpserted


def job(name: str, interval: str = "1s") -> dict[str, Any]:
    return {
        "name": name,
        "schedule": {"interval": interval},
        "source": {"url": "http://127.0.0.1:9/x"},
        "destination": {"table": name},
    }


async def test_a_stale_resume_after_a_pause_fires_nothing() -> None:
    system = SteppedSystem([job("p")], run_steps=1)
    await system.start()
    await system.set_paused("p", True)
    await system.step(2)
    before = len(system.runs("p"))
    # the resume of long ago, delivered (again) now: DuckDB says paused
    await system.broker.publish(TOPIC_CONFIG, [JobPauseChanged(name="p", paused=False)])
    await system.step(20)  # 5 s of 1 s ticks
    assert len(system.runs("p")) == before, system.runs("p")


async def test_a_stale_upsert_or_delete_is_read_back_from_duckdb() -> None:
    system = SteppedSystem([job("kept"), job("gone")], run_steps=1)
    await system.start()
    system.store.delete_job("gone")
    stale = [
        JobUpserted(name="gone", spec=job("gone")),  # upserted before it was deleted
        JobDeleted(name="kept"),  # deleted before it was stored again
    ]
    await system.broker.publish(TOPIC_CONFIG, stale)
    await system.step(1)
    await system.step(12)
    assert system.scheduler is not None
    status = await system.scheduler.job_status()
    assert "kept" in status and "gone" not in status, status
    kept = len(system.runs("kept"))
    await system.step(8)
    assert len(system.runs("kept")) > kept  # still firing


async def test_a_batch_of_announcements_is_read_back_in_one_query() -> None:
    """A folder of many files arrives as announcements of up to 500: the Scheduler reads
    the batch's jobs from DuckDB with one get_jobs, not one get_job each."""
    system = SteppedSystem([job("first")], run_steps=1)
    await system.start()
    names = [f"job{i:03d}" for i in range(300)]
    system.store.upsert_jobs([(name, job(name, "1h")) for name in names], "file")
    calls = {"get_job": 0, "get_jobs": 0}
    for method in calls:
        real = getattr(system.store, method)

        def counted(*args: Any, _real: Any = real, _name: str = method) -> Any:
            calls[_name] += 1
            return _real(*args)

        setattr(system.store, method, counted)
    announced = [JobUpserted(name=name, spec=job(name, "1h")) for name in names]
    await system.broker.publish(TOPIC_CONFIG, announced)
    await system.step(1)
    assert system.scheduler is not None
    status = await system.scheduler.job_status()
    assert set(names) <= set(status), sorted(set(names) - set(status))[:5]
    assert calls == {"get_job": 0, "get_jobs": 1}
