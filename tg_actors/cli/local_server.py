"""An ASGI app served by uvicorn on a background thread (the demo source for `tg run`)."""

from __future__ import annotations

import random
import socket
import threading
import time
from typing import Any

import uvicorn


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((host, port)) != 0


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a server started after this returns. Not one the OS
    hands out by itself (its ephemeral range, 32768 and up here) nor one of Ray's worker ports
    (10002-19999 by default): a Ray worker binding an ephemeral port took a port picked that
    way before the Serve proxy bound it ("Failed to bind to address")."""
    for _ in range(200):
        port = random.randrange(_PORTS[0], _PORTS[1])
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # all taken: any free one
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_PORTS = (20000, 32000)  # between Ray's worker ports and the OS's ephemeral range


class ThreadedServer:
    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.host = host
        self.port = port

    def start(self, timeout: float = 10.0) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"server on {self.host}:{self.port} did not start")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
