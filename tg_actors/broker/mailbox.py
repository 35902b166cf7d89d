"""The broker's reply mailbox: a caller waits on a key (a command id) that an answer is posted
under. In the broker actor's event loop, like the topics; lost with the broker (a caller
waiting then sees the broker's restart as an error, never a wrong answer).

Several callers may wait on one key (a client that sent a command again before its first
answer came): an answer goes to every one of them. An answer nobody waits for is dropped:
the caller gave up, and the command's owner has recorded it (tg.commands).
"""

from __future__ import annotations

import asyncio
from typing import Any


class Mailbox:
    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[Any]]] = {}

    def open(self, key: str) -> asyncio.Future[Any]:
        """A future the answer under `key` resolves; `close` it when done waiting."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        return future

    def close(self, key: str, future: asyncio.Future[Any]) -> None:
        waiting = self._waiting.get(key, [])
        if future in waiting:
            waiting.remove(future)
        if not waiting:
            self._waiting.pop(key, None)

    def post(self, key: str, answer: Any) -> int:
        """Hand `answer` to everyone waiting on `key`; how many were."""
        waiting = self._waiting.pop(key, [])
        for future in waiting:
            if not future.done():
                future.set_result(answer)
        return len(waiting)

    def __len__(self) -> int:
        return sum(len(w) for w in self._waiting.values())
