"""How actors reach each other: a named actor looked up lazily (Peer), and a typed face on a
handle (`face`) that is the one place Ray's errors are translated into ours.

An actor handle passed to a constructor makes Ray keep the constructor's arguments in the
object store, which can break restarts (ray#53727). A Peer pickles as (name, namespace) and
behaves like the handle (`peer.method.remote(...)`) once resolved.

`db: interfaces.Database = face(handle)` gives an object typed as the Protocol whose methods are
plain coroutines (`await db.get_run(run_id)`): mypy checks every call against the contract
in tg_actors/interfaces.py, and callers never see Ray. An error the actor raised comes out as
itself (RayTaskError unwrapped); an actor that is down or restarting as PeerUnavailable.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError

from tg_actors.errors import PeerUnavailable


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


def unwrap(exc: BaseException) -> BaseException:
    """The error an actor raised, out of Ray's wrapper."""
    return exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc


class _Face:
    """Calls `handle.NAME.remote(...)` for `face.NAME(...)`, translating Ray's errors."""

    __slots__ = ("_handle",)

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def __getattr__(self, name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        if name.startswith("_"):
            raise AttributeError(name)
        handle = self._handle

        async def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return await getattr(handle, name).remote(*args, **kwargs)
            except RayTaskError as exc:
                raise unwrap(exc) from None
            except RayActorError as exc:
                raise PeerUnavailable(_actor_name(handle), type(exc).__name__) from exc

        call.__name__ = name
        return call

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Face, (self._handle,))

    def __repr__(self) -> str:
        return f"face({self._handle!r})"


def face(handle: Any) -> Any:
    """`handle` (a Ray actor handle, a Peer, or a simulated peer with `.method.remote`) seen
    as its interface: the caller annotates what it holds (`db: interfaces.Database =
    face(handle)`), and mypy checks each call against that Protocol. (A Protocol cannot be
    passed as `type[T]`, so the annotation carries the type.)"""
    return _Face(handle)


def _actor_name(handle: Any) -> str:
    name = getattr(handle, "name", None)
    return name if isinstance(name, str) else type(handle).__name__


def own_actor_process() -> bool:
    """Whether this process is a Ray actor's own (an engine, the Database), not a driver that
    built an actor's class directly (a test, a notebook)."""
    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
