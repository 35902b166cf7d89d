"""The `tg` CLI in subprocesses, for the e2e and cluster tests: the command line, its
environment, a free port, a job file against the demo API, a started process (`Proc`, read
on a thread, killed by PID / process group when the block ends: nothing is ever killed by
name), bounded polling, and the process checks (alive, loopback listeners).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import duckdb
import httpx

from tg_actors.cli.local_server import free_port as free_port  # for the tests

try:
    import psutil
except ImportError:  # Ray vendors psutil in ray/thirdparty_files (on sys.path once ray is imported)
    _ray = importlib.util.find_spec("ray")
    assert _ray is not None and _ray.origin is not None
    sys.path.append(str(Path(_ray.origin).parent / "thirdparty_files"))
    import psutil

UP_TIMEOUT = 120.0  # `tg up` until "is up" (25-50 s on a quiet 2-core box)
EXIT_TIMEOUT = 60.0  # signal until the process has exited
RUN_TIMEOUT = 240.0  # a whole `tg run`
JOB = "e2e_orders"


def tg_env(port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TG_ADDRESS", None)
    env.pop("TG_API_TOKEN", None)  # the token must come from the generated file
    env.update(
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        TG_LOG_LEVEL="WARNING",
        TG_HOST="127.0.0.1",
        TG_PORT=str(port),
        PYTHONUNBUFFERED="1",
    )
    return env


def tg(*args: str) -> list[str]:
    return [sys.executable, "-m", "tg_actors.cli.main", *args]


def orders_job(port: int, *, name: str = JOB, path: str = "/demo/orders", interval: bool) -> str:
    schedule = "schedule:\n  interval: 2s\n  overlap: skip\n" if interval else ""
    return (
        f"name: {name}\n"
        f"{schedule}"
        "source:\n"
        "  type: http\n"
        f"  url: http://127.0.0.1:{port}{path}\n"
        "  params: {per_page: 500}\n"
        '  records: "$.data"\n'
        "  paginate: {type: page, param: page, start: 1}\n"
        "  timeout: 30s\n"
        "destination:\n"
        f"  table: {name}\n"
        "  write: merge\n"
        "  primary_key: [id]\n"
    )


class Proc:
    """A `tg` subprocess in its own session; output (stdout + stderr) read on a thread."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.popen = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.descendants: dict[int, psutil.Process] = {}

    def _read(self) -> None:
        assert self.popen.stdout is not None
        with self.popen.stdout:  # closed at EOF: an open pipe left behind is a ResourceWarning
            for line in self.popen.stdout:
                self.lines.append(line.rstrip("\n"))
                self._new.put(line.rstrip("\n"))
        self._new.put(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        regex = re.compile(pattern)
        for line in list(self.lines):
            if m := regex.search(line):
                return m
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._new.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(
                    f"tg exited ({self.popen.poll()}) before printing /{pattern}/:\n{self.output}"
                )
            if m := regex.search(line):
                return m
        raise AssertionError(f"no line /{pattern}/ after {timeout:g}s:\n{self.output}")

    def wait(self, timeout: float) -> int:
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"tg still running {timeout:g}s later:\n{self.output}") from None
        self._reader.join(timeout=10)
        return rc

    def record_descendants(self) -> dict[int, psutil.Process]:
        with suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.pid).children(recursive=True):
                self.descendants.setdefault(child.pid, child)
        return self.descendants

    def kill_all(self) -> None:
        """Test failed or over: kill our process group, then every descendant seen, by PID."""
        if self.popen.poll() is None:
            self.record_descendants()
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)  # the session we started: pgid == pid
        for proc in self.descendants.values():
            with suppress(psutil.Error):
                proc.kill()  # psutil checks the create time: a reused PID is left alone
        with suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self._reader.join(timeout=10)


@contextmanager
def started(args: list[str], env: dict[str, str], cwd: Path) -> Iterator[Proc]:
    proc = Proc(args, env, cwd)
    try:
        yield proc
    finally:
        proc.kill_all()


def run_tg(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[int, str]:
    with started(args, env, cwd) as proc:
        return proc.wait(timeout), proc.output


def tg_on_file(db: Path, cwd: Path, command: str, *args: str) -> tuple[int, str]:
    """`tg COMMAND ARGS --db DB` with no `tg up` about: (exit code, output)."""
    return run_tg(tg(command, *args, "--db", str(db)), tg_env(free_port()), cwd, 60)


def read_rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    """The rows of `sql` as a direct read-only DuckDB read of the file has them."""
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def describe(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())[:200]
    except psutil.Error as exc:
        return repr(exc)


def loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return addr.is_loopback or (mapped is not None and mapped.is_loopback)


def upstream_exception(proc: psutil.Process, ip: str) -> bool:
    """Ray Serve 2.60 binds each replica's inter-deployment gRPC server to "[::]:0"
    (ray/serve/_private/replica.py, `_on_initialized`), with no setting to change it; that
    server checks Ray's cluster auth token. Tolerated here; anything else must be loopback."""
    with suppress(psutil.Error):
        return ip == "::" and proc.cmdline()[0].startswith("ray::ServeReplica:")
    return False


def listening_sockets(procs: list[psutil.Process]) -> list[tuple[psutil.Process, str, int, str]]:
    """(process, ip, port, command) of each listening socket of `procs`."""
    found = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except psutil.Error:
            continue
        found += [
            (proc, c.laddr.ip, c.laddr.port, name) for c in conns if c.status == psutil.CONN_LISTEN
        ]
    return found


def non_loopback_listeners(procs: list[psutil.Process]) -> list[tuple[int, str, int, str]]:
    """(pid, ip, port, command) of each listening socket of `procs` beyond loopback."""
    return [
        (proc.pid, ip, port, name)
        for proc, ip, port, name in listening_sockets(procs)
        if not loopback(ip) and not upstream_exception(proc, ip)
    ]


def poll(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """Call `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (httpx.HTTPError, ValueError) as exc:  # not serving yet, a slow or non-JSON answer
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s (last: {last!r})")
        time.sleep(every)
