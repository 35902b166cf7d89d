"""A Ray cluster on this machine for the session: a head that holds the DuckDB file (custom
resource `db`, no CPU: no engine can land there) and two worker nodes, as `ray_cluster.yaml`
lays it out. Run with `pytest --cluster` (`make test` does)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

WORKERS = 2
WORKER_CPUS = 2


class LocalCluster:
    """ray.cluster_utils.Cluster plus what the tests ask of it: which node is which, losing a
    worker, and getting back to two workers for the next test."""

    def __init__(self) -> None:
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(
            initialize_head=True, head_node_args={"num_cpus": 0, "resources": {"db": 1}}
        )
        self.head_id: str = self.cluster.head_node.node_id
        self.restore()

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def workers(self) -> dict[str, Any]:
        """node id -> node, for the worker nodes alive."""
        return {node.node_id: node for node in self.cluster.worker_nodes}

    def restore(self) -> None:
        """Back to WORKERS live worker nodes (a test may have removed some)."""
        for _ in range(WORKERS - len(self.cluster.worker_nodes)):
            self.cluster.add_node(num_cpus=WORKER_CPUS)
        self.cluster.wait_for_nodes()

    def lose(self, node_id: str) -> None:
        """The node dies at once: its raylet and every worker process on it are killed."""
        self.cluster.remove_node(self.workers()[node_id], allow_graceful=False)

    def shutdown(self) -> None:
        self.cluster.shutdown()


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    import ray

    cluster = LocalCluster()
    ray.init(address=cluster.address, namespace="tg_cluster_tests", include_dashboard=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def cluster(local_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The session's cluster with both workers up, and again after the test."""
    local_cluster.restore()
    yield local_cluster
    local_cluster.restore()
