"""What the benchmarks share: psutil, a trivial source server in its own process, bounded
waits and percentiles. Imported by the bench scripts (bench/ is on sys.path when one runs);
`python bench/benchkit.py` is the source server itself."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

try:
    import psutil
except ImportError:  # Ray vendors it
    _spec = importlib.util.find_spec("ray")
    assert _spec is not None and _spec.submodule_search_locations, "neither psutil nor ray found"
    sys.path.append(str(Path(_spec.submodule_search_locations[0]) / "thirdparty_files"))
    import psutil

__all__ = ["ServerProcess", "bounded", "free_port", "pct", "psutil", "wait_http"]
T = TypeVar("T")


def serve() -> None:
    """The server process: bind 127.0.0.1:0, print the port, answer `[{"id": 1}]` at /items
    until terminated (or orphaned: it never outlives the benchmark holding its stderr)."""
    import signal

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def items(_request: Request) -> Response:
        return Response(b'[{"id": 1}]', media_type="application/json")

    async def health(_request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    app = Starlette(routes=[Route("/items", items), Route("/health", health)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"port {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        app, lifespan="off", access_log=False, log_level="warning", timeout_keep_alive=30
    )
    server = uvicorn.Server(config)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    parent = os.getppid()

    def orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        server.should_exit = True

    threading.Thread(target=orphaned, daemon=True).start()
    server.run(sockets=[sock])


class ServerProcess:
    """A source server in its own process, by default the trivial one (`python
    bench/benchkit.py`): it prints `port N`, then serves /health; `url` once it answers."""

    def __init__(self, command: Sequence[str] | None = None, ready_s: float = 60.0) -> None:
        command = command or [sys.executable, str(Path(__file__).resolve())]
        self.proc = subprocess.Popen(list(command), stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"source server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        wait_http(f"{self.url}/health", ready_s, "the source server", self.proc)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)


def wait_http(
    url: str, seconds: float, what: str, proc: subprocess.Popen[str] | None = None
) -> float:
    """GET url until 200 (bounded); returns the seconds it took."""
    began = time.monotonic()
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return time.monotonic() - began
        except httpx.TransportError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() - began > seconds:
            raise RuntimeError(f"{what} did not answer 200 at {url} within {seconds:.0f}s")
        time.sleep(0.1)


def bounded(fn: Callable[[], T], seconds: float, what: str) -> T:
    """fn() on a thread, waited for at most `seconds` (runtime.start waits without a bound)."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(fn).result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        raise TimeoutError(f"{what} took more than {seconds:.0f}s") from None
    finally:
        pool.shutdown(wait=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


if __name__ == "__main__":
    serve()
