"""An actor object hosted on an event-loop thread of this process, called as a Ray actor is.

`tg run` hosts its Scheduler so (runtime.start(one_off=True)): a one-off run's Scheduler is
called by the process that started it and by no one else (the engine and the Database reach it
through the broker's topics only), so it needs no Ray worker process of its own, which costs
~170-190 MiB and ~1 s of CPU to start while the other actors start.

`hosted.method.remote(*args)` returns a `concurrent.futures.Future` of the method's result
(awaited on the host's loop when it is a coroutine); the object is built on that loop too, so
that the asyncio objects and tasks it makes belong to it, as in an async Ray actor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Hosted(Generic[T]):
    def __init__(self, make: Callable[[], T], name: str) -> None:
        self.name = name
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

        async def build() -> T:
            return make()

        self.obj: T = asyncio.run_coroutine_threadsafe(build(), self._loop).result()

    def __getattr__(self, method: str) -> _Method:
        if method.startswith("_"):
            raise AttributeError(method)
        return _Method(self, getattr(self.obj, method))

    def call(
        self, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        """`fn(*args, **kwargs)` on the host's loop (awaited when it gives an awaitable)."""
        if self._loop.is_closed():
            raise RuntimeError(f"{self.name} is closed")

        async def run() -> Any:
            result = fn(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self._loop)

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what still runs on the loop (the object's own tasks), then end the thread."""
        if self._loop.is_closed():
            return

        async def cancel_rest() -> None:
            me = asyncio.current_task()
            rest = [task for task in asyncio.all_tasks() if task is not me]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_rest(), self._loop).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass  # a task that ignores its cancel: the loop stops around it
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()

    def __repr__(self) -> str:
        return f"Hosted({self.name!r})"


class _Method:
    def __init__(self, host: Hosted[Any], fn: Callable[..., Any]) -> None:
        self._host, self._fn = host, fn

    def remote(self, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        return self._host.call(self._fn, *args, **kwargs)
