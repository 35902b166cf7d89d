"""`tg up --address` as the README tells a user to run it on a cluster: it joins the session's
cluster (a head with the `db` resource and two workers), spreads its engines over the workers,
syncs, scales with `tg engines`, and stops cleanly; it also runs as a Ray Client (`ray://`);
a cluster with no `db` node is refused.

(The cluster is ray.cluster_utils', not `ray start` processes: a multi-node `ray start` refuses
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and without it Ray binds the machine's address, not
127.0.0.1. A single-node `ray start --head` accepts it, so the refusal test uses one.)"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import ray

from tests.kit.cli import free_port, orders_job, run_tg, started, tg, tg_env
from tests.kit.cluster import LocalCluster, node_of
from tests.kit.harness import tg_up
from tests.kit.jobs import write_job

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
RAY = str(Path(sys.executable).parent / "ray")


def token_env(port: int) -> dict[str, str]:
    """`ray start --head` turns Ray's token auth on: whoever joins needs RAY_AUTH_MODE=token
    (ray_cluster.yaml sets it on every node). The session's cluster_utils cluster does not."""
    return tg_env(port) | {"RAY_AUTH_MODE": "token"}


def test_tg_up_joins_a_cluster_spreads_engines_syncs_and_scales(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    port = free_port()
    configs, db = tmp_path / "configs", tmp_path / "data" / "cluster.duckdb"
    write_job(configs, "e2e_orders", orders_job(port, interval=False))
    env = tg_env(port) | {"TG_ENGINE_NUM_CPUS": "1"}
    extra = ("--address", cluster.address, "--engines", "2")
    with tg_up(configs, db, port, tmp_path, env, extra) as server:
        engines = server.get("/api/engines")
        assert engines["count"] == 2 and engines["nodes"] == 2, engines
        assert {e["node_id"] for e in engines["engines"]} == set(cluster.workers())
        run_id = server.trigger("e2e_orders")
        run = server.wait_ended([run_id], 120)[run_id]
        assert run["state"] == "succeeded", run
        assert run["rows_loaded"] == 2500
        # scaled with the CLI, through the API: the third engine takes 1 of the 2 CPUs left
        rc, out = run_tg(
            tg("engines", "3", "--url", server.base, "--db", str(db)), env, tmp_path, 120
        )
        assert rc == 0, out
        assert "added: tg_engine_2" in out and "3 engine(s) on 2 node(s)" in out
        assert server.get("/api/engines")["capacity"] == 3 * 8
        # the API and UI: one replica and the one proxy, both on the head
        serve_actors = [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == "serve" and ("REPLICA" in a["name"] or "PROXY" in a["name"])
        ]
        assert any("REPLICA" in n for n in serve_actors) and any("PROXY" in n for n in serve_actors)
        for name in serve_actors:
            assert node_of(ray.get_actor(name, namespace="serve")) == cluster.head_id, name
        server.stop()  # exit 0, "DuckDB closed cleanly", nothing of it left running


@contextmanager
def ray_head(tmp_path: Path, *flags: str) -> Iterator[tuple[int, int]]:
    """A single-node `ray start --head` of ours on 127.0.0.1: (GCS port, Ray Client port)."""
    gcs, client = free_port(), free_port()
    head = [RAY, "start", "--head", f"--port={gcs}", f"--ray-client-server-port={client}"]
    head += ["--include-dashboard=false", "--block", "--node-ip-address=127.0.0.1", *flags]
    with started([*head, "--disable-usage-stats"], token_env(0), tmp_path) as proc:
        proc.wait_for_line(r"Ray runtime started", 90)
        try:
            yield gcs, client
        finally:
            proc.record_descendants()  # killed by PID after, should any outlive `ray start`
            proc.popen.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
            proc.wait(60)


def test_tg_up_refuses_a_cluster_without_a_db_node(tmp_path: Path) -> None:
    with ray_head(tmp_path, "--num-cpus=1") as (gcs, _client):
        db = str(tmp_path / "x.duckdb")
        args = tg("up", "--address", f"127.0.0.1:{gcs}", "--db", db)
        rc, out = run_tg(args, token_env(free_port()), tmp_path, 120)
    assert rc == 1, out
    assert "declares the custom resource 'db'" in out and "Traceback" not in out


def test_tg_up_runs_as_a_ray_client_through_ray_url(tmp_path: Path) -> None:
    port = free_port()
    configs, db = tmp_path / "configs", tmp_path / "data" / "client.duckdb"
    write_job(configs, "e2e_orders", orders_job(port, interval=False))
    with ray_head(tmp_path, "--num-cpus=2", '--resources={"db": 1}') as (_gcs, client):
        extra = ("--address", f"ray://127.0.0.1:{client}", "--engines", "1")
        with tg_up(configs, db, port, tmp_path, token_env(port), extra) as server:
            run_id = server.trigger("e2e_orders")
            run = server.wait_ended([run_id], 120)[run_id]
            assert (run["state"], run["rows_loaded"]) == ("succeeded", 2500), run
            assert server.get("/api/engines")["count"] == 1
            server.stop()
