"""The system on a multi-node Ray (a head and two workers on this machine): engines spread over
the workers, the control plane and DuckDB on the head, batches made on the workers reaching the
Database through the object store, and runs retried elsewhere when their worker node dies."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from tests.kit.cluster import LocalCluster, node_of
from tests.kit.faults import (
    add_job,
    assert_consistent,
    expected,
    retries_logged,
    source,
    staged_pages,
    totals,
)
from tests.kit.ray import poll_until, running_system, wait_for_run
from tg_actors import runtime

pytestmark = [pytest.mark.cluster, pytest.mark.ray, pytest.mark.slow]


def engine_nodes(rt: runtime.Runtime) -> dict[str, str]:
    """engine id -> node id."""
    stats = ray.get([e.stats.remote() for e in rt.engines], timeout=30)
    return {s["engine"]: s["node_id"] for s in stats}


def test_engines_spread_over_the_workers_and_the_control_plane_stays_on_the_head(
    cluster: LocalCluster, tmp_path: Path, namespace: str
) -> None:
    runtime.check_db_node()  # the head declares `db`
    with running_system(tmp_path, namespace, engines=2, engine_num_cpus=1) as rt:
        nodes = engine_nodes(rt)
        # each worker could hold both (2 CPUs): SPREAD put them on different nodes
        assert len(set(nodes.values())) == 2
        assert set(nodes.values()) == set(cluster.workers())
        for name, actor in rt.components().items():
            if not name.startswith("engine_"):
                assert node_of(actor) == cluster.head_id, f"{name} is not on the head"
        # the engines' work queue is an actor of its own (ray.util.queue): on the head too
        queue = ray.get(rt.broker.subscribe.remote("triggers", "engines", shared=True))
        assert node_of(queue.actor) == cluster.head_id


def test_batches_made_on_the_workers_land_exactly_in_duckdb_on_the_head(
    cluster: LocalCluster, tmp_path: Path, namespace: str
) -> None:
    with source(rows=2000, per_page=100, delay=0.02) as (url, api):
        for job in ("east", "west"):  # every page is one staged batch: 20 per run
            add_job(tmp_path, job, url)
        with running_system(
            tmp_path, namespace, engines=2, engine_num_cpus=1, engine_slots=1
        ) as rt:
            ids = [ray.get(rt.scheduler.trigger.remote(job)) for job in ("east", "west")]
            runs = [wait_for_run(rt, run_id, timeout=120) for run_id in ids]
            assert [r["state"] for r in runs] == ["succeeded"] * 2, [r["error"] for r in runs]
            nodes = engine_nodes(rt)
            # one run on each engine, each on its own worker node, the Database on the head
            assert {r["engine"] for r in runs} == set(nodes)
            assert cluster.head_id not in nodes.values()
            assert node_of(rt.db) == cluster.head_id
            for job in ("east", "west"):
                assert totals(rt, job) == expected(api)
            assert_consistent(rt, {"east": 1, "west": 1})


def test_losing_a_worker_node_mid_run_retries_the_run_elsewhere_with_exact_rows(
    cluster: LocalCluster, tmp_path: Path, namespace: str
) -> None:
    with source(rows=1000, per_page=100, delay=0.4) as (url, api):  # ~4.4 s a run
        add_job(tmp_path, "victim", url)
        # a lease longer than the test: the engine, restarted on the other worker, is what
        # tells the Scheduler the run was lost
        with running_system(
            tmp_path, namespace, engines=2, engine_num_cpus=1, engine_slots=1, lease_seconds=600
        ) as rt:
            run_id = ray.get(rt.scheduler.trigger.remote("victim"))
            staged_pages(rt, run_id, 2)
            (engine,) = ray.get(
                rt.db.query.remote(f"SELECT engine FROM tg.runs WHERE run_id = '{run_id}'")
            )[0]
            lost_node = engine_nodes(rt)[engine]
            (survivor,) = set(cluster.workers()) - {lost_node}
            cluster.lose(lost_node)
            done = wait_for_run(rt, run_id, timeout=120)
            assert done["state"] == "succeeded", done["error"]
            assert done["attempt"] == 2 and done["rows_loaded"] == 1000
            assert retries_logged(rt, run_id) == 1
            logs = [e["message"] for e in ray.get(rt.db.get_logs.remote(run_id))]
            assert any("engine lost" in m and "restarted" in m for m in logs), logs
            # both engines now live on the surviving worker
            assert set(engine_nodes(rt).values()) == {survivor}
            assert totals(rt, "victim") == expected(api)
            assert_consistent(rt, {"victim": 1})
    pages = [q.get("page", "1") for q in api.stats["queries"]]
    assert pages.count("1") == 1  # resumed after its staged pages, not from the start


def test_a_lost_node_whose_engine_fits_nowhere_expires_its_lease_and_the_run_moves(
    cluster: LocalCluster, tmp_path: Path, namespace: str
) -> None:
    with source(rows=1000, per_page=100, delay=0.4) as (url, api):
        add_job(tmp_path, "stranded", url)
        # each engine fills a worker: the lost one's engine has nowhere to restart
        with running_system(
            tmp_path, namespace, engines=2, engine_num_cpus=2, engine_slots=1, lease_seconds=3
        ) as rt:
            run_id = ray.get(rt.scheduler.trigger.remote("stranded"))
            staged_pages(rt, run_id, 2)
            nodes = engine_nodes(rt)
            (engine,) = ray.get(
                rt.db.query.remote(f"SELECT engine FROM tg.runs WHERE run_id = '{run_id}'")
            )[0]
            (other,) = set(nodes) - {engine}
            cluster.lose(nodes[engine])
            done = wait_for_run(rt, run_id, timeout=120)
            assert done["state"] == "succeeded", done["error"]
            assert (done["attempt"], done["engine"]) == (2, other)
            logs = [e["message"] for e in ray.get(rt.db.get_logs.remote(run_id))]
            assert any("no heartbeat" in m for m in logs), logs
            assert totals(rt, "stranded") == expected(api)
            assert_consistent(rt, {"stranded": 1})
            # a new node: the stranded engine restarts there by itself
            cluster.restore()

            def back() -> bool | None:
                states = ray.get(rt.pool.describe.remote())
                return all(s["state"] == "up" for s in states) or None

            poll_until("the stranded engine to come back on the new node", back, 90, every=1)
            assert len(set(engine_nodes(rt).values())) == 2
