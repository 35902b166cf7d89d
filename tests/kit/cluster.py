"""A Ray cluster on this machine (ray.cluster_utils.Cluster), as `ray_cluster.yaml` lays it
out: a head that holds the DuckDB file (custom resource `db`, no CPU: no engine can
land there) and WORKERS worker nodes; and `node_of`, the node an actor lives on. The session
fixtures that start it are in tests/cluster/conftest.py."""

from __future__ import annotations

from typing import Any

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


def node_of(actor: Any) -> str:
    """The id of the node the actor's worker process runs on."""
    import ray

    ref = actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id())
    return str(ray.get(ref, timeout=30))
