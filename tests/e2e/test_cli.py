"""End-to-end: the `tg` CLI as a user runs it, in subprocesses, each with its own local Ray.

Every wait is bounded. Whatever a test starts runs in its own session (process group) and is
killed by PID / process group if the test fails; nothing is ever killed by name.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import queue
import re
import signal
import socket
import stat
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
import pytest

try:
    import psutil
except ImportError:  # Ray vendors psutil in ray/thirdparty_files (on sys.path once ray is imported)
    _ray = importlib.util.find_spec("ray")
    assert _ray is not None and _ray.origin is not None
    sys.path.append(str(Path(_ray.origin).parent / "thirdparty_files"))
    import psutil

pytestmark = [pytest.mark.slow]

UP_TIMEOUT = 120.0  # `tg up` until "is up" (25-50 s on a quiet 2-core box)
EXIT_TIMEOUT = 60.0  # signal until the process has exited
RUN_TIMEOUT = 240.0  # a whole `tg run`
JOB = "e2e_orders"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def write_job(configs: Path, name: str, text: str) -> Path:
    jobs = configs / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    path = jobs / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


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


def non_loopback_listeners(procs: list[psutil.Process]) -> list[tuple[int, str, int, str]]:
    """(pid, ip, port, command) of each listening socket of `procs` beyond loopback."""
    found = []
    for proc in procs:
        try:
            conns = proc.net_connections(kind="inet")
            name = proc.name()
        except psutil.Error:
            continue
        found += [
            (proc.pid, c.laddr.ip, c.laddr.port, name)
            for c in conns
            if c.status == psutil.CONN_LISTEN
            and not loopback(c.laddr.ip)
            and not upstream_exception(proc, c.laddr.ip)
        ]
    return found


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


# -- tg up -------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_up_serves_syncs_and_stops_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    port = free_port()
    configs = tmp_path / "configs"
    write_job(configs, JOB, orders_job(port, interval=True))
    db = tmp_path / "data" / "turbo_giggle.duckdb"
    args = tg("up", "--configs", str(configs), "--db", str(db), "--host", "127.0.0.1")
    args += ["--port", str(port)]
    base = f"http://127.0.0.1:{port}"

    with started(args, tg_env(port), tmp_path) as proc:
        up = proc.wait_for_line(r"turbo-giggle is up in ([\d.]+)s", UP_TIMEOUT)
        proc.wait_for_line(rf"^\s+UI:\s+http://127\.0\.0\.1:{port}/$", 5)
        token_file = Path(proc.wait_for_line(r"^\s+token:\s+(.+)$", 5)[1].strip())
        assert token_file == db.parent / "api_token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text(encoding="utf-8").strip()
        assert token

        with httpx.Client(base_url=base, timeout=10.0) as client:

            def healthy() -> dict[str, Any] | None:
                body: dict[str, Any] = client.get("/api/health").json()
                return body if body.get("status") == "ok" else None

            health = poll("GET /api/health ok", healthy, 30)
            assert set(health["components"].values()) == {"alive"}
            assert client.get("/api/runs").status_code == 401  # the token is required

            auth = {"Authorization": f"Bearer {token}"}

            def succeeded_runs() -> list[dict[str, Any]]:
                r = client.get("/api/runs", params={"job": JOB}, headers=auth)
                r.raise_for_status()
                return [run for run in r.json() if run["state"] == "succeeded"]

            runs = poll("a succeeded run", succeeded_runs, 90)
            assert runs[0]["rows_loaded"] == 2500

        proc.record_descendants()
        assert proc.descendants, "tg up started no child processes (no Ray?)"
        exposed = non_loopback_listeners([psutil.Process(proc.pid), *proc.descendants.values()])
        assert not exposed, f"listening beyond loopback: {exposed}"
        began = time.monotonic()
        proc.popen.send_signal(signum)
        rc = proc.wait(EXIT_TIMEOUT)
        stop_s = time.monotonic() - began
        assert rc == 0, f"exit code {rc}:\n{proc.output}"
        assert "stopped; DuckDB closed cleanly." in proc.lines, proc.output

        def none_left() -> bool:
            return not any(alive(p) for p in proc.descendants.values())

        leftover = "Ray processes left behind"
        with suppress(AssertionError):
            poll(leftover, none_left, 10, every=0.25)
        left = {pid: describe(p) for pid, p in proc.descendants.items() if alive(p)}
        assert not left, f"{leftover}: {left}"

    con = duckdb.connect(str(db), read_only=True)
    try:
        ids = con.execute(f"SELECT count(DISTINCT id), count(*) FROM main.{JOB}").fetchone()
        assert ids == (2500, 2500)
        assert con.execute("SELECT name FROM tg.jobs").fetchall() == [(JOB,)]
        states = dict(
            con.execute(
                "SELECT state, count(*) FROM tg.runs WHERE job = ? GROUP BY state", [JOB]
            ).fetchall()
        )
        assert states.get("succeeded", 0) >= len(runs), states
        assert con.execute(
            "SELECT min(rows_loaded), max(rows_loaded) FROM tg.runs WHERE state = 'succeeded'"
        ).fetchone() == (2500, 2500)
    finally:
        con.close()
    print(f"{signum.name}: up in {up[1]}s, stopped in {stop_s:.1f}s, runs {states}")


def test_up_refuses_a_db_named_tg(tmp_path: Path) -> None:
    port = free_port()
    began = time.monotonic()
    rc, out = run_tg(tg("up", "--db", "x/tg.duckdb"), tg_env(port), tmp_path, timeout=60)
    assert rc != 0, out
    assert "clashes with the schema 'tg'" in out
    assert "x/tg.duckdb" in out
    assert not (tmp_path / "x").exists()
    assert time.monotonic() - began < 60


# -- tg run ------------------------------------------------------------------------------------


def test_run_once_success_failure_and_unknown_job(tmp_path: Path) -> None:
    port = free_port()
    configs = tmp_path / "configs"
    write_job(configs, JOB, orders_job(port, interval=False))
    write_job(
        configs,
        "e2e_missing",
        orders_job(port, name="e2e_missing", path="/demo/nope", interval=False),
    )
    db = tmp_path / "data" / "turbo_giggle.duckdb"
    env = tg_env(port)
    common = ["--configs", str(configs), "--db", str(db)]

    rc, out = run_tg(tg("run", JOB, *common), env, tmp_path, RUN_TIMEOUT)
    assert rc == 0, out
    pattern = rf"^{JOB}: succeeded — 2500 rows, (\d+) pages, (\d+\.\d\d)s \(run (\w+)\)$"
    assert re.search(pattern, out, re.MULTILINE), out

    rc, out = run_tg(tg("run", "e2e_missing", *common), env, tmp_path, RUN_TIMEOUT)
    assert rc == 1, out
    assert re.search(r"^e2e_missing: failed — 0 rows", out, re.MULTILINE), out
    assert re.search(r"^error: .*404", out, re.MULTILINE), out

    rc, out = run_tg(tg("run", "nope", *common), env, tmp_path, RUN_TIMEOUT)
    assert rc == 1, out
    assert "No job named 'nope'" in out

    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute(f"SELECT count(DISTINCT id) FROM main.{JOB}").fetchone() == (2500,)
        states = con.execute("SELECT job, state FROM tg.runs ORDER BY job").fetchall()
        assert states == [("e2e_missing", "failed"), (JOB, "succeeded")]
    finally:
        con.close()


# -- tg validate -------------------------------------------------------------------------------


def test_validate_reports_each_error_by_file_and_field(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    good = write_job(configs, "good", orders_job(8000, name="good", interval=False))
    bad = write_job(
        configs,
        "bad",
        orders_job(8000, name="bad", interval=False)
        .replace("param: page,", "parm: page,")
        .replace("  primary_key: [id]\n", ""),
    )
    rc, out = run_tg(tg("validate", str(configs / "jobs")), tg_env(free_port()), tmp_path, 60)
    assert rc == 1, out
    lines = out.splitlines()
    assert f"{bad}: source.paginate.parm: unknown field" in lines, out
    assert any(
        re.fullmatch(rf"{re.escape(str(bad))}: destination: .*primary_key.*", line)
        for line in lines
    ), out
    assert f"{good}: ok (job good)" in lines, out
