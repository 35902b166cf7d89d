"""What the benchmarks share: a local Ray on loopback, the short mode, source servers in their
own process, bounded waits and timers, percentiles, CPU meters, py-spy profiles and the
turbo-giggle runtime. Imported by the bench scripts (bench/ is on sys.path when one runs);
`python bench/benchkit.py` is the trivial source server itself.

Importing this module keeps any Ray this process (or a child) starts on 127.0.0.1: Ray reads
that setting when it is imported, so a script imports benchkit before ray or tg_actors.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib.util
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tg_actors.cli.local_server import free_port

try:
    import psutil
except ImportError:  # Ray vendors it
    _spec = importlib.util.find_spec("ray")
    assert _spec is not None and _spec.submodule_search_locations, "neither psutil nor ray found"
    sys.path.append(str(Path(_spec.submodule_search_locations[0]) / "thirdparty_files"))
    import psutil

__all__ = [
    "MIB",
    "CpuMeter",
    "MemorySampler",
    "Profiler",
    "ServerProcess",
    "Stacks",
    "actor_pid",
    "bounded",
    "descendant_pids",
    "free_port",
    "listen",
    "ms",
    "parse_args",
    "pct",
    "proc_name",
    "psutil",
    "query_of",
    "ray_on_loopback",
    "read_stacks",
    "run_asgi",
    "send_body",
    "start_runtime",
    "stop_runtime",
    "timer",
    "trivial_job",
    "wait_http",
    "write_jobs",
]
T = TypeVar("T")
QUICK_ENV = "TG_BENCH_QUICK"
MIB = 1024 * 1024


def ray_on_loopback() -> None:
    """A single-node Ray started from here binds 127.0.0.1 (and its workers inherit it); actor
    logs quiet (WARNING) and undeduplicated unless the environment says otherwise."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TG_LOG_LEVEL", "WARNING")  # every run logs INFO lines otherwise


ray_on_loopback()


# --- the short mode ----------------------------------------------------------------------------


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None, **quick: Any
) -> argparse.Namespace:
    """parser.parse_args with a `--quick` flag: with it (or TG_BENCH_QUICK=1) the defaults
    become the small sizes in `quick` (flags given still win), for a run of seconds; a child
    process inherits the variable, so its own flags must say what it needs."""
    parser.add_argument(
        "--quick", action="store_true", help=f"small sizes, seconds not minutes ({QUICK_ENV}=1)"
    )
    args = parser.parse_args(argv)
    if args.quick or os.environ.get(QUICK_ENV, "") not in ("", "0"):
        parser.set_defaults(**quick)
        args = parser.parse_args(argv)
        args.quick = True
        # on stderr: a server child's stdout carries its `port N` line
        print(f"quick mode: {', '.join(f'{k}={v}' for k, v in quick.items())}", file=sys.stderr)
    return args


# --- timers and bounded waits ------------------------------------------------------------------


@contextlib.contextmanager
def timer(what: str) -> Iterator[None]:
    """Prints `  {what} in N.Ns` once the block is done."""
    began = time.perf_counter()
    yield
    print(f"  {what} in {time.perf_counter() - began:.1f}s", flush=True)


def bounded(fn: Callable[[], T], seconds: float, what: str) -> T:
    """fn() on a thread, waited for at most `seconds` (runtime.start waits without a bound)."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(fn).result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        raise TimeoutError(f"{what} took more than {seconds:.0f}s") from None
    finally:
        pool.shutdown(wait=False)


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


# --- percentiles and figures -------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    """Seconds as milliseconds, `1,234.5`; `-` for nan."""
    return "-" if seconds != seconds else f"{seconds * 1000:,.1f}"


# --- source servers: the process side ----------------------------------------------------------


def listen() -> tuple[socket.socket, str]:
    """A socket bound to 127.0.0.1 on a free port, announced as `port N` on stdout (what
    ServerProcess reads); returns it and its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    print(f"port {port}", flush=True)
    return sock, f"http://127.0.0.1:{port}"


def run_asgi(app: Any, sock: socket.socket, **options: Any) -> None:
    """uvicorn on `sock` until SIGTERM (then exit 0) or until orphaned (it never outlives the
    benchmark that started it)."""
    import signal

    import uvicorn

    defaults: dict[str, Any] = {"lifespan": "off", "access_log": False, "log_level": "warning"}
    config = uvicorn.Config(app, timeout_keep_alive=30, **(defaults | options))
    server = uvicorn.Server(config)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    parent = os.getppid()

    def orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        server.should_exit = True

    threading.Thread(target=orphaned, daemon=True).start()
    server.run(sockets=[sock])


def query_of(scope: dict[str, Any]) -> dict[bytes, bytes]:
    """An ASGI request's query string as {name: value}."""
    return dict(p.split(b"=", 1) for p in scope["query_string"].split(b"&") if b"=" in p)


async def send_body(
    send: Any,
    body: bytes,
    status: int = 200,
    content_type: bytes = b"application/json",
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer an ASGI request with a body (JSON unless `content_type` says), plus `extra`
    response headers."""
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve() -> None:
    """The trivial source: answers `[{"id": 1}]` at /items and ok at /health."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/items":
            await send_body(send, b'[{"id": 1}]')
        elif scope["path"] == "/health":
            await send_body(send, b'{"status":"ok"}')
        else:
            await send_body(send, b'{"detail":"not found"}', 404)

    sock, _url = listen()
    run_asgi(app, sock)


# --- source servers: the benchmark side --------------------------------------------------------


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


# --- turbo-giggle: job files and the runtime ---------------------------------------------------

_JOB = """name: {name}
{head}
timeout: 1m
source:
  url: {url}/items
  records: "$"
  paginate: {{type: none}}
  timeout: 10s
  max_tries: 1
destination: {{table: bench, write: append}}
"""


def trivial_job(name: str, url: str, schedule: str | None = None) -> str:
    """A job reading the trivial source at `url` into table `bench` (append): on `schedule`
    (the YAML mapping's inside), or manual only with no limit on active runs."""
    head = f"schedule: {{{schedule}}}" if schedule else "max_active_runs: 100000"
    return _JOB.format(name=name, head=head, url=url)


def write_jobs(configs: Path, jobs: dict[str, str]) -> None:
    """configs/jobs/{name}.yaml for each {name: YAML text}."""
    folder = configs / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in jobs.items():
        (folder / f"{name}.yaml").write_text(text)


def start_runtime(settings: Any, *, schedules: bool = False, init: bool = True) -> Any:
    """turbo-giggle's actors (no Serve app), bounded; first our own local Ray unless `init`
    is false (a Ray already up). Prints how long each took."""
    from tg_actors import runtime

    if init:
        with timer("ray up"):
            runtime.init_ray(settings)  # on the main thread (Ray installs signal handlers)

    def start() -> Any:
        return runtime.start(settings, schedules=schedules, serve_app=False)

    with timer("runtime.start (actors, job files, scheduler boot)"):
        return bounded(start, 600, "runtime.start")


def stop_runtime(rt: Any, grace: float = 10.0) -> None:
    """runtime.stop, bounded; prints how long it took."""
    from tg_actors import runtime

    with timer("runtime stopped"):
        bounded(lambda: runtime.stop(rt, grace=grace), grace + 180, "runtime.stop")


def tear_down(rt: Any, source: Any, tmp: Path) -> None:
    """The end of a bench that ran a runtime, whatever happened: the runtime stopped (a
    failure to stop is printed, not raised), Ray shut down, the source stopped, tmp removed."""
    import ray

    if rt is not None:
        try:
            stop_runtime(rt, grace=5)
        except Exception as exc:
            print(f"  runtime.stop failed: {type(exc).__name__}: {exc}")
    if ray.is_initialized():
        ray.shutdown()
    source.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def actor_pid(handle: Any) -> int | None:
    """The pid of an actor's process, asked of the actor itself; None (and a line) if it does
    not answer."""
    import ray

    try:
        call = handle.__ray_call__.remote(lambda _self: __import__("os").getpid())
        return int(ray.get(call, timeout=30))
    except Exception as exc:
        print(f"  (pid via __ray_call__ failed: {type(exc).__name__}: {exc})")
        return None


def descendant_pids(wanted: dict[str, str]) -> dict[str, int]:
    """{label: pid} of this process's descendants whose title (argv[0], as Ray workers retitle
    themselves) starts with, or whose name is, a key of `wanted` ({key: label}): only this
    benchmark's own processes, though other Rays may run on the machine."""
    found: dict[str, int] = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd, name = proc.cmdline(), proc.name()
        except psutil.Error:
            continue
        for key, label in wanted.items():
            if name == key or (cmd and cmd[0].startswith(key)):
                found[label] = proc.pid
    return found


# --- memory --------------------------------------------------------------------------------


def proc_name(proc: psutil.Process) -> str:
    """A process's label: a Ray worker's title (argv[0], retitled after its actor) without
    the method it runs now, else the names of its first non-flag arguments."""
    cmd = proc.cmdline()
    if not cmd:
        return proc.name()
    if cmd[0].startswith("ray::"):  # `ray::Actor.method` while a call runs
        return cmd[0].split(".")[0][:40]
    names = [Path(c).name for c in cmd[:3] if not c.startswith("-")]
    return " ".join(names)[:40]


@dataclass
class MemorySampler:
    """Peak RSS of process `pid` (unless not `include_root`) and its descendants but
    `exclude`, sampled on a thread every `every` seconds over a `with` block: per process
    (`peak`, pid -> (rss, name)) and the peak of their sum (`peak_sum`: pages shared between
    processes counted once per process). `on_sample(procs)` after each sample."""

    pid: int
    every: float = 0.2
    exclude: frozenset[int] = frozenset()
    include_root: bool = True
    on_sample: Callable[[list[psutil.Process]], None] | None = None
    peak_sum: int = 0
    peak: dict[int, tuple[int, str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            if not self.include_root:
                procs = procs[1:]
            total = 0
            for proc in procs:
                if proc.pid in self.exclude:
                    continue
                try:
                    rss, name = proc.memory_info().rss, proc_name(proc)
                except psutil.Error:
                    continue
                total += rss
                if rss > self.peak.get(proc.pid, (0, ""))[0]:
                    self.peak[proc.pid] = (rss, name)
            self.peak_sum = max(self.peak_sum, total)
            if self.on_sample is not None:
                self.on_sample(procs)
            self._stop.wait(self.every)

    def biggest(self) -> tuple[int, str]:
        """(rss, name) of the process with the highest peak; (0, "-") if none was sampled."""
        return max(self.peak.values(), default=(0, "-"))

    def top(self, n: int = 6) -> str:
        """The `n` highest peaks as `name MiB, ...`."""
        biggest = sorted(self.peak.values(), reverse=True)[:n]
        return ", ".join(f"{name} {rss / MIB:.0f}" for rss, name in biggest)


# --- CPU -----------------------------------------------------------------------------------


def _cpu(proc: psutil.Process) -> float | None:
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return None
    return float(t.user + t.system)


def _tree_cpu() -> float:
    """CPU seconds of this process, its live descendants and its reaped children."""
    me = psutil.Process()
    live = sum(c for p in [me, *me.children(recursive=True)] if (c := _cpu(p)) is not None)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return live + usage.ru_utime + usage.ru_stime


def _machine_cpu() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


@dataclass
class CpuMeter:
    """CPU between start() and stop(), or over a `with` block, as shares of one core (100% =
    one core busy): of each named process, of the children this process reaped meanwhile
    (under `reaped`, e.g. wrk), of this benchmark's whole process tree, of the machine."""

    pids: dict[str, int]
    reaped: str | None = None
    hide_below: float = 0.0  # shares under this are left out of the report
    began: float = 0.0
    first: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    share: dict[str, float] = field(default_factory=dict)
    tree: float = 0.0
    machine: float = 0.0

    def start(self) -> CpuMeter:
        self.began, self.first = time.perf_counter(), self._sample()
        return self

    def stop(self) -> None:
        end = self._sample()
        self.wall = wall = max(time.perf_counter() - self.began, 1e-9)
        self.share = {k: (end[k] - self.first[k]) / wall for k in end if k in self.first}
        self.tree, self.machine = self.share.pop("(tree)"), self.share.pop("(machine)")

    def __enter__(self) -> CpuMeter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def report(self, label: str) -> None:
        parts = sorted(self.share.items(), key=lambda kv: -kv[1])
        text = ", ".join(f"{k} {v * 100:.0f}%" for k, v in parts if v >= self.hide_below)
        cores = psutil.cpu_count() or 1
        others = max(0.0, self.machine - self.tree)
        print(f"  CPU {label} ({self.wall:.0f}s, % of one core): {text}")
        print(
            f"    all of this benchmark's processes {self.tree * 100:.0f}%; machine busy "
            f"{self.machine * 100:.0f}% of {cores * 100}% (others: {others * 100:.0f}%)",
            flush=True,
        )

    def _sample(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            try:
                seconds = _cpu(psutil.Process(pid))
            except psutil.Error:
                continue
            if seconds is not None:
                out[name] = seconds
        if self.reaped:
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            out[self.reaped] = usage.ru_utime + usage.ru_stime
        out["(tree)"], out["(machine)"] = _tree_cpu(), _machine_cpu()
        return out


# --- py-spy profiles -----------------------------------------------------------------------


class Profiler:
    """py-spy record (raw collapsed stacks) of processes, a file each under `folder`; does
    nothing without a folder, or (saying so) without py-spy next to this python."""

    def __init__(self, folder: Path | None, rate: int = 100, threads: bool = False) -> None:
        self.folder, self.rate, self.threads = folder, rate, threads
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if folder is not None and self.py_spy is None:
            print("  (py-spy not found next to this python: no profile)")

    @property
    def on(self) -> bool:
        return self.folder is not None and self.py_spy is not None

    def record(self, label: str, pid: int, seconds: float | None, file: str = "") -> None:
        """py-spy on `pid` for `seconds` (None: until it exits) into folder/file (label.txt)."""
        if self.folder is None or self.py_spy is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        out = self.folder / (file or f"{label}.txt")
        command = [self.py_spy, "record", "-p", str(pid), "-o", str(out), "-f", "raw"]
        command += ["-r", str(self.rate), "--nonblocking"]
        if seconds is not None:
            command += ["-d", str(max(1, int(seconds)))]
        if self.threads:
            command.append("--threads")
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append((label, proc, out))

    def finish(
        self, summarise: Callable[[str, Path], None] | None = None, wait: float = 60.0
    ) -> None:
        """Wait for every recording (py-spy writes its file at the end), then summarise each."""
        for label, proc, out in self.procs:
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if summarise is not None and out.exists():
                summarise(label, out)
        self.procs.clear()


def frame_name(frame: str) -> str:
    """py-spy's "function (path/to/file.py:123)" -> "function (file.py)"."""
    name, _, where = frame.partition(" (")
    file = Path(where.rstrip(")").rsplit(":", 1)[0]).name if where else ""
    return f"{name} ({file})" if file else name


@dataclass
class Stacks:
    """A py-spy raw profile counted: samples in all, per thread, per leaf frame, and per frame
    anywhere on the stack (inclusive: once a sample)."""

    total: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    leaf: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)


def read_stacks(path: Path, inclusive_of: str = "") -> Stacks:
    """Count a raw profile; the inclusive counts only of frames whose text has `inclusive_of`
    (e.g. "tg_actors/")."""
    stacks = Stacks()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, (thread, *frames) = int(count), stack.split(";")
        if not frames:
            continue
        stacks.total += n
        stacks.threads[thread] += n
        stacks.leaf[frame_name(frames[-1])] += n
        for key in {frame_name(f) for f in frames if inclusive_of in f}:
            stacks.inclusive[key] += n
    return stacks


if __name__ == "__main__":
    serve()
