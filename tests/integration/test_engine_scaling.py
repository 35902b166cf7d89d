"""Engines scaled at run time (EnginePool): new engines take queued work and raise the
Scheduler's capacity; removed ones drain, and a run cut off by the grace period is retried on
another engine from its last staged page, with exact rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from tests.kit.faults import (
    add_job,
    assert_consistent,
    expected,
    source,
    staged_pages,
    totals,
)
from tests.kit.ray import poll_until, running_system, wait_for_run, wait_state
from tg_actors.engine.pool import EngineFactory, EnginePool
from tg_actors.errors import NoCapacity
from tg_actors.peer import Peer
from tg_actors.runtime import Runtime, engine_options

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


def capacity(rt: Runtime) -> tuple[int, int]:
    status = ray.get(rt.scheduler.status.remote())
    return status["engines"], status["slots"]


def engines_of(rt: Runtime, job: str) -> set[str]:
    rows = ray.get(rt.db.query.remote(f"SELECT DISTINCT engine FROM tg.runs WHERE job = '{job}'"))
    return {engine for (engine,) in rows}


def test_scaling_up_adds_engines_that_take_the_queued_runs(tmp_path: Path, namespace: str) -> None:
    with source(rows=400, per_page=100, delay=0.3) as (url, api):  # ~1.5 s a run
        add_job(tmp_path, "wide", url, extra="max_active_runs: 10\n")
        with running_system(tmp_path, namespace, engines=1, engine_slots=1) as rt:
            assert capacity(rt) == (1, 1)
            ids = [ray.get(rt.scheduler.trigger.remote("wide")) for _ in range(6)]
            outcome = ray.get(rt.pool.scale.remote(3))
            assert outcome["added"] == ["tg_engine_1", "tg_engine_2"]
            assert outcome["removed"] == [] and outcome["interrupted"] == []
            assert capacity(rt) == (3, 3)
            assert len(rt.engines) == 3
            runs = [wait_for_run(rt, run_id, timeout=60) for run_id in ids]
            assert [r["state"] for r in runs] == ["succeeded"] * 6
            assert {r["attempt"] for r in runs} == {1}
            # the new engines took queued runs (one engine alone would take ~9 s for six)
            assert engines_of(rt, "wide") & {"engine-1", "engine-2"}
            rows, distinct, *_ = totals(rt, "wide")
            assert (rows, distinct) == (6 * 400, 400)
            assert_consistent(rt, {"wide": 6})
    assert expected(api)[0] == 400


def test_scaling_down_drains_the_removed_engines_runs_to_their_end(
    tmp_path: Path, namespace: str
) -> None:
    with source(rows=500, per_page=100, delay=0.3) as (url, _api):  # ~1.8 s a run
        add_job(tmp_path, "a", url)
        add_job(tmp_path, "b", url)
        with running_system(tmp_path, namespace, engines=2, engine_slots=1) as rt:
            first = [ray.get(rt.scheduler.trigger.remote(job)) for job in ("a", "b")]
            for run_id in first:
                wait_state(rt, run_id, "running")
            outcome = ray.get(rt.pool.scale.remote(1, 60.0))  # waits for the run on engine-1
            assert outcome["removed"] == ["tg_engine_1"] and outcome["interrupted"] == []
            assert capacity(rt) == (1, 1)
            with pytest.raises(ValueError):
                ray.get_actor("tg_engine_1", namespace=namespace)
            runs = [wait_for_run(rt, run_id, timeout=60) for run_id in first]
            assert [(r["state"], r["attempt"]) for r in runs] == [("succeeded", 1)] * 2
            later = [ray.get(rt.scheduler.trigger.remote(job)) for job in ("a", "b")]
            runs = [wait_for_run(rt, run_id, timeout=60) for run_id in later]
            assert [r["state"] for r in runs] == ["succeeded"] * 2
            assert {r["engine"] for r in runs} == {"engine-0"}
            assert totals(rt, "a")[:2] == totals(rt, "b")[:2] == (1000, 500)
            assert_consistent(rt, {"a": 2, "b": 2})


def test_a_run_cut_off_by_the_grace_period_resumes_on_another_engine_exactly(
    tmp_path: Path, namespace: str
) -> None:
    with source(rows=1000, per_page=100, delay=0.4) as (url, api):  # ~4.4 s a run
        add_job(tmp_path, "cut", url)
        add_job(tmp_path, "other", url)
        with running_system(tmp_path, namespace, engines=2, engine_slots=1) as rt:
            ids = {job: ray.get(rt.scheduler.trigger.remote(job)) for job in ("cut", "other")}
            for run_id in ids.values():
                staged_pages(rt, run_id, 2)
            on = {ray.get(e.stats.remote())["engine"]: e for e in rt.engines}
            busy = {
                engine: next(iter(ray.get(e.stats.remote())["current_runs"]))
                for engine, e in on.items()
            }
            victim = busy["engine-1"]  # the newest engine is removed first
            outcome = ray.get(rt.pool.scale.remote(1, 0.0))
            assert outcome["interrupted"] == [victim]
            done = wait_for_run(rt, victim, timeout=60)
            assert done["state"] == "succeeded", done["error"]
            assert done["attempt"] == 2 and done["engine"] == "engine-0"
            logs = [e["message"] for e in ray.get(rt.db.get_logs.remote(victim))]
            assert any("engine removed" in m for m in logs), logs
            survivor = wait_for_run(rt, busy["engine-0"], timeout=60)
            assert (survivor["state"], survivor["attempt"]) == ("succeeded", 1)
            for job in ids:
                assert totals(rt, job) == expected(api)
            assert_consistent(rt, {"cut": 1, "other": 1})
    # resumed after its staged pages: no page of the run was fetched three times
    pages = [q.get("page", "1") for q in api.stats["queries"]]
    assert max(pages.count(str(p)) for p in range(1, 11)) <= 3  # 2 runs + 1 resumed page


def test_scaling_to_more_engines_than_the_cluster_can_place_fails_whole(
    tmp_path: Path, namespace: str
) -> None:
    with running_system(tmp_path, namespace, engines=1) as rt:
        # a second pool over the same engines, whose new engines need 64 CPUs each: no node
        # of the test Ray has them
        engines = EngineFactory((None, None, None, 1), engine_options(namespace, 64.0))
        strict = (
            ray.remote(EnginePool)
            .options(num_cpus=0, name="strict_pool", namespace=namespace)
            .remote(namespace, engines, None, Peer("none", namespace), 0.0, 3.0)
        )
        assert ray.get(strict.names.remote()) == ["tg_engine_0"]  # found by name
        with pytest.raises(NoCapacity, match="could not be placed"):
            ray.get(strict.scale.remote(3))
        ray.kill(strict)
        poll_until("the unplaced engines to go", lambda: _gone(namespace, "tg_engine_1"), 10)
        assert _gone(namespace, "tg_engine_2")
        assert ray.get(rt.pool.names.remote()) == ["tg_engine_0"]
        assert capacity(rt)[0] == 1


def _gone(namespace: str, name: str) -> bool | None:
    try:
        ray.get_actor(name, namespace=namespace)
    except ValueError:
        return True
    return None
