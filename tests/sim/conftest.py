"""The simulation is Ray-free: a call to ray.init here is a bug in the harness."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("tests/sim must not start Ray")

    monkeypatch.setattr(ray, "init", refuse)
    yield
