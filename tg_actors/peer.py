"""A named actor, looked up lazily: what actors get instead of each other's handles.

An actor handle passed to a constructor makes Ray keep the constructor's arguments in the
object store, which can break restarts (ray#53727). A Peer pickles as (name, namespace) and
behaves like the handle (`peer.method.remote(...)`) once resolved.
"""

from __future__ import annotations

from typing import Any

import ray


class Peer:
    def __init__(self, name: str, namespace: str) -> None:
        self.name = name
        self.namespace = namespace
        self._handle: Any = None

    @property
    def handle(self) -> Any:
        if self._handle is None:
            self._handle = ray.get_actor(self.name, namespace=self.namespace)
        return self._handle

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.handle, attr)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Peer, (self.name, self.namespace))

    def __repr__(self) -> str:
        return f"Peer({self.name!r}, namespace={self.namespace!r})"
