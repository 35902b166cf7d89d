"""Shared fixtures: ONE local Ray per test session (ray.init costs 10-25 s here), a fresh
actor namespace per test, and the session's HTTP sources (`demo_server`, `slow_server`, from
tests/kit/servers.py). The helpers the tests import are in the tests/kit package."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on 127.0.0.1
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TG_LOG_LEVEL", "WARNING")

# fixtures for every test (after the environment above: they import the product)
from tests.kit.servers import demo_server, slow_server  # noqa: E402, F401


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:

    from tg_actors.runtime import init_ray, shutdown_ray
    from tg_actors.settings import Settings

    init_ray(Settings(namespace="tg_tests"))
    yield
    shutdown_ray()


@pytest.fixture
def namespace() -> str:
    """A fresh actor namespace, so tests never share named actors."""
    return f"t_{uuid.uuid4().hex[:10]}"


# tests/cluster needs a multi-node Ray of its own (ray.cluster_utils.Cluster), which cannot
# share a process with the single-node Ray of the other tests: `pytest --cluster` runs only
# them, plain `pytest` everything else (`make test` runs both)
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster", action="store_true", help="run only the multi-node tests in tests/cluster"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    want = bool(config.getoption("--cluster"))
    keep = [item for item in items if ("cluster" in item.keywords) == want]
    dropped = [item for item in items if ("cluster" in item.keywords) != want]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
