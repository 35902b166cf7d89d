"""A Ray cluster on this machine for the session (tests/kit/cluster.py's LocalCluster: a head
that holds the DuckDB file and two worker nodes, as `ray_cluster.yaml` lays it out), and each
test's view of it with both workers up. Run with `pytest --cluster` (`make test` does)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kit.cluster import LocalCluster


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
