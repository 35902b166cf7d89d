"""Start-up of actor loops that survives restarts.

A Ray async actor's `__init__` runs inside its event loop, and a restarted actor (max_restarts)
runs `__init__` again: starting the boot task there means a restarted actor resumes by itself,
with no one having to call `start()` again. `start()` only waits for that boot to finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class Boot:
    def __init__(self, boot: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._boot = boot
        self._task: asyncio.Task[None] | None = None
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # built outside an event loop (plain tests): start on demand
            return
        self._task = asyncio.get_running_loop().create_task(boot())

    async def wait(self) -> None:
        """Run the boot if it has not started; wait for it; re-raise its failure."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._boot())
        await asyncio.shield(self._task)
