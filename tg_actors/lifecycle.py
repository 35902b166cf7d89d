"""Start-up of actor loops that survives restarts and peers that are not there yet.

A Ray async actor's `__init__` runs inside its event loop, and a restarted actor (max_restarts)
runs `__init__` again: starting the boot task there means a restarted actor resumes by itself,
with no one having to call `start()` again. A boot that fails (a peer briefly unavailable while
it restarts) is tried again, with backoff, until it succeeds: an actor is never left alive and
inert. Until then `done` is False and the actor's ping answers "booting".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)
FIRST_RETRY_S, MAX_RETRY_S = 0.25, 5.0


class Boot:
    def __init__(
        self, boot: Callable[[], Coroutine[Any, Any, None]], autostart: bool = True
    ) -> None:
        """autostart=False: nothing runs by itself; each `wait()` makes one try (the caller,
        e.g. the deterministic simulation, drives the retries)."""
        self._boot = boot
        self._auto = autostart
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self.done = False
        self.tries = 0
        self.error: BaseException | None = None
        if not autostart:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # built outside an event loop (plain tests): start on demand
            return
        self._task = asyncio.get_running_loop().create_task(self._until_booted())

    @property
    def state(self) -> str:
        return "ok" if self.done else "booting"

    async def wait(self) -> None:
        """Return once booted; raise the failure of the next try that fails (the tries go on
        in the background meanwhile)."""
        if self.done:
            return
        if not self._auto:
            await self._try()
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._until_booted())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        await future

    async def _try(self) -> None:
        self.tries += 1
        try:
            await self._boot()
        except Exception as exc:
            self.error = exc
            raise
        self.done, self.error = True, None

    async def _until_booted(self) -> None:
        delay = FIRST_RETRY_S
        while not self.done:
            try:
                await self._try()
            except Exception as exc:
                log.warning(
                    "boot failed (try %d), trying again in %.2fs: %r", self.tries, delay, exc
                )
                self._settle(exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, MAX_RETRY_S)
        self._settle(None)

    def _settle(self, exc: BaseException | None) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if future.done():
                continue
            if exc is None:
                future.set_result(None)
            else:
                future.set_exception(exc)
