"""tg_actors.hosted: an object on an event-loop thread of this process, called as an actor."""

from __future__ import annotations

import asyncio
import threading

import pytest

from tg_actors.hosted import Hosted


class Counter:
    """Made on a running loop (as the Scheduler's Boot wants), with a task of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.count = 0
        self.ticking = self.loop.create_task(self._tick())
        self.cancelled = threading.Event()

    async def _tick(self) -> None:
        try:
            await asyncio.Event().wait()  # until cancelled
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def add(self, n: int, *, twice: bool = False) -> int:
        await asyncio.sleep(0)
        self.count += n * (2 if twice else 1)
        return self.count

    def thread(self) -> str:
        return threading.current_thread().name

    async def fail(self) -> None:
        raise ValueError("no such job")


def test_methods_run_on_the_host_loop_and_answer_as_futures() -> None:
    host = Hosted(Counter, "counter")
    try:
        assert host.add.remote(2).result(5) == 2
        assert host.add.remote(1, twice=True).result(5) == 4
        assert host.thread.remote().result(5) == "counter"  # a plain method, on its thread
        assert host.obj.loop is host._loop
        with pytest.raises(ValueError, match="no such job"):
            host.fail.remote().result(5)
    finally:
        host.close()


def test_close_cancels_the_objects_tasks_and_ends_the_thread() -> None:
    host = Hosted(Counter, "counter")
    counter = host.obj
    host.close()
    assert counter.cancelled.is_set() and counter.ticking.cancelled()
    assert not host._thread.is_alive()
    with pytest.raises(RuntimeError, match="counter is closed"):
        host.add.remote(1)
    host.close()  # a second close does nothing


def test_private_names_are_not_callable_from_outside() -> None:
    host = Hosted(Counter, "counter")
    try:
        with pytest.raises(AttributeError):
            host._tick  # noqa: B018
    finally:
        host.close()
