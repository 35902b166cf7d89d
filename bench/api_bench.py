"""HTTP API benchmark: many concurrent clients on GET /api/runs and GET /api/jobs.

    .venv/bin/python bench/api_bench.py [--clients 200] [--seconds 20] [--runs 1000]
        [--jobs 10] [--loadgen auto|wrk|python] [--timeout 10] [--max-ongoing N]
        [--profile DIR]

Run by hand, never by the tests. Everything on 127.0.0.1: a trivial source (starlette on
uvicorn, in its own process) answers `[{"id": 1}]` at /items; one local Ray; turbo-giggle's
actors and the Serve app (a free port, a fixed token) started by `runtime.start` from --jobs
job files written into a temporary configs folder.

1. History: --runs `scheduler.trigger(job)` calls at once over the jobs, then a wait (bounded
   by --fill-budget) until every run has ended, read from `tg.runs` through the Database actor.
2. Warm-up: a few sequential requests per route (checks 200 and the answers' sizes).
3. Load: --clients connections for --seconds, half on `GET /api/runs` (default limit 100) and
   half on `GET /api/jobs`, each with the bearer token, every client sending its next request
   as soon as the last one is answered (closed loop). With `wrk` on PATH (Debian: `apt-get
   install -y wrk`) one wrk per route runs in parallel (`wrk -t2 -c<half> -d<s>s --latency`);
   otherwise (or with --loadgen python) asyncio + httpx in this process, one AsyncClient of
   one connection per client (no client waits on a shared pool). Errors: non-2xx answers,
   transport errors, timeouts (--timeout per request, both load generators).

The app is deployed as shipped (`runtime.start_serve`), unless --max-ongoing N: then with
`max_ongoing_requests=N` (Serve's default is 5 per replica; the requests beyond wait in the
proxy's router, which retries with backoff up to 0.5 s), to tell that limit from the cost of
the requests themselves.

Printed per route and in total: requests, requests/s, p50, p99 and max latency, errors. wrk
reports percentiles per route only: the total p99 printed for it is the larger route p99, an
upper bound of the mixture's. Also the CPU (% of one core) of the Serve proxy and replica, the
Database, Scheduler and ConfigManager actors and the load generator over the load window, and
with --profile py-spy records of the proxy, the replica and the Database, summarised as top
frames. The load generator shares the machine's 2 cores with the server: its latencies include
its own queueing. With a closed loop, latency ~= clients / throughput (Little's law): p99 <
100 ms with 200 clients needs more than 2,000 requests/s. Target (2 cores): no errors, p99 <
100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# before Ray is imported (tg_actors.runtime imports it): a single-node Ray on 127.0.0.1
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TG_LOG_LEVEL", "WARNING")  # every run logs INFO lines otherwise

import httpx  # noqa: E402
from benchkit import ServerProcess, bounded, free_port, pct, psutil, wait_http  # noqa: E402

ROUTES = ("/api/runs", "/api/jobs")
TOKEN = f"bench-{uuid.uuid4().hex}"
ENDED = ("succeeded", "failed", "cancelled", "skipped")

# --- the jobs: each reads the trivial source (benchkit.ServerProcess) -------------------------

JOB = """name: {name}
max_active_runs: 100000
timeout: 1m
source:
  url: {url}/items
  records: "$"
  paginate: {{type: none}}
  timeout: 10s
  max_tries: 1
destination: {{table: bench, write: append}}
"""

# --- helpers ---------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:,.1f}"


# --- the runtime -------------------------------------------------------------------------------


def start_runtime(tmp: Path, names: list[str], url: str, port: int) -> Any:
    from tg_actors import runtime
    from tg_actors.settings import Settings

    jobs = tmp / "configs" / "jobs"
    jobs.mkdir(parents=True)
    for name in names:
        (jobs / f"{name}.yaml").write_text(JOB.format(name=name, url=url))
    settings = Settings(
        configs=tmp / "configs",
        db_path=tmp / "data" / "api_bench.duckdb",
        namespace=f"api_bench_{uuid.uuid4().hex[:6]}",
        port=port,
        api_token=TOKEN,
    )
    began = time.perf_counter()
    runtime.init_ray(settings)  # on the main thread (Ray installs signal handlers)
    print(f"  ray up in {time.perf_counter() - began:.1f}s", flush=True)
    began = time.perf_counter()
    rt = bounded(lambda: runtime.start(settings, schedules=False, serve_app=False), 600, "start")
    print(f"  actors up in {time.perf_counter() - began:.1f}s", flush=True)
    return rt


def start_serve(rt: Any, base: str, max_ongoing: int | None) -> None:
    import serve.app as app_module
    from tg_actors import runtime

    began = time.perf_counter()
    original = app_module.build_app
    if max_ongoing is not None:  # the app as shipped, but with another max_ongoing_requests

        def build_app(settings: Any, token: str) -> Any:
            app = app_module.TurboGiggleApp.options(max_ongoing_requests=max_ongoing)  # type: ignore[attr-defined]
            return app.bind(settings.model_dump(mode="json"), token)

        app_module.build_app = build_app
    try:  # on the main thread, as the tests do; serve.run returns once the app is up
        runtime.start_serve(rt)
    finally:
        app_module.build_app = original
    wait_http(f"{base}/api/health", 300, "the Serve app")
    print(f"  Serve app up at {base} in {time.perf_counter() - began:.1f}s", flush=True)


def stop_runtime(rt: Any) -> None:
    from tg_actors import runtime

    began = time.perf_counter()
    bounded(lambda: runtime.stop(rt, grace=5), 240, "runtime.stop")
    print(f"  runtime stopped in {time.perf_counter() - began:.1f}s", flush=True)


def run_counts(rt: Any) -> dict[str, int]:
    import ray

    sql = "SELECT state, count(*) FROM tg.runs GROUP BY 1"
    try:
        return {str(s): int(n) for s, n in ray.get(rt.db.query.remote(sql), timeout=30)}
    except Exception as exc:
        print(f"  (run counts: {type(exc).__name__}: {exc})")
        return {}


def fill_history(rt: Any, names: list[str], runs: int, budget: float) -> dict[str, int]:
    """Trigger `runs` runs over the jobs at once and wait (bounded) until all have ended."""
    import ray

    began = time.monotonic()
    refs = [rt.scheduler.trigger.remote(names[i % len(names)]) for i in range(runs)]
    ray.get(refs, timeout=budget)
    print(f"  {runs} trigger calls returned in {time.monotonic() - began:.1f}s", flush=True)
    next_report = began + 5
    counts: dict[str, int] = {}
    while time.monotonic() - began < budget:
        counts = run_counts(rt)
        ended = sum(counts.get(s, 0) for s in ENDED)
        if ended >= runs:
            break
        if time.monotonic() >= next_report:
            print(f"  t+{time.monotonic() - began:3.0f}s: {ended}/{runs} runs ended", flush=True)
            next_report += 5
        time.sleep(0.5)
    else:
        print(f"  WARNING fill budget of {budget:g}s spent: not every run ended; measuring anyway")
    seconds = time.monotonic() - began
    print(f"  history: {dict(sorted(counts.items()))} after {seconds:.1f}s", flush=True)
    return counts


def warm_up(base: str, headers: dict[str, str], rounds: int = 5) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for route in ROUTES:
            took = []
            for _ in range(rounds):
                began = time.perf_counter()
                response = client.get(route)
                took.append(time.perf_counter() - began)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {route}: {response.status_code} {response.text}")
            body = response.json()
            print(
                f"  warm-up GET {route}: {len(body)} items, {len(response.content):,} bytes; "
                f"first {ms(took[0])} ms, then {', '.join(ms(t) for t in took[1:])} ms",
                flush=True,
            )


# --- load generators ---------------------------------------------------------------------------


@dataclass
class RouteResult:
    route: str
    clients: int
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50: float = float("nan")  # seconds
    p99: float = float("nan")
    max: float = float("nan")
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # sorted; python loadgen only
    in_window: int = 0  # python loadgen: answered before the deadline


async def _client_loop(
    client: httpx.AsyncClient, route: str, deadline: float, result: RouteResult
) -> None:
    latencies, errors = result.latencies, result.errors
    async with client:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                response = await client.get(route)
                if not 200 <= response.status_code < 300:
                    errors[f"HTTP {response.status_code}"] += 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
            ended = time.perf_counter()
            latencies.append(ended - began)
            result.in_window += ended <= deadline


async def _python_load(
    base: str, clients: dict[str, int], seconds: float, timeout: float
) -> list[RouteResult]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    results = [RouteResult(route, n) for route, n in clients.items()]
    deadline = time.perf_counter() + seconds
    tasks = [
        _client_loop(
            httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=timeout),
            result.route,
            deadline,
            result,
        )
        for result in results
        for _ in range(result.clients)
    ]
    await asyncio.gather(*tasks)
    for result in results:
        result.latencies.sort()
        summarise(result, seconds)
    return results


def summarise(result: RouteResult, seconds: float) -> None:
    """As wrk counts: requests/s of the answers within the window; but the latencies also
    of the requests sent in the window and answered after it (wrk drops those)."""
    lat = result.latencies
    result.requests, result.seconds = len(lat), seconds
    result.rps = result.in_window / seconds
    result.p50, result.p99 = pct(lat, 50), pct(lat, 99)
    result.max = lat[-1] if lat else float("nan")


def python_load(
    base: str, clients: dict[str, int], seconds: float, timeout: float
) -> list[RouteResult]:
    return asyncio.run(_python_load(base, clients, seconds, timeout))


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not found:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(found[1]) * _UNITS[found[2]]


def parse_wrk(route: str, clients: int, text: str) -> RouteResult:
    """A RouteResult from wrk's --latency output."""
    result = RouteResult(route, clients)
    done = re.search(r"(\d+) requests in ([\d.]+\w+),", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not done or not rps:
        raise RuntimeError(f"wrk on {route} printed no summary:\n{text}")
    result.requests, result.seconds = int(done[1]), _duration(done[2])
    result.rps = float(rps[1])
    p50 = re.search(r"^\s+50%\s+(\S+)\s*$", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)\s*$", text, re.M)
    top = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", text, re.M)
    result.p50 = _duration(p50[1]) if p50 else float("nan")
    result.p99 = _duration(p99[1]) if p99 else float("nan")
    result.max = _duration(top[1]) if top else float("nan")
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        for kind, n in zip(("connect", "read", "write", "timeout"), sock.groups(), strict=True):
            if int(n):
                result.errors[f"socket {kind}"] += int(n)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non2xx:
        result.errors["non-2xx/3xx"] += int(non2xx[1])
    return result


class WrkLoad:
    """One wrk per route, started together; `results()` waits and parses their output."""

    def __init__(
        self, wrk: str, base: str, clients: dict[str, int], seconds: float, timeout: float
    ) -> None:
        self.clients, self.seconds = clients, seconds
        self.procs: dict[str, subprocess.Popen[str]] = {}
        for route, n in clients.items():
            command = [wrk, f"-t{min(2, n)}", f"-c{n}", f"-d{seconds:g}s", "--latency"]
            command += [f"--timeout={timeout:g}s", "-H", f"Authorization: Bearer {TOKEN}"]
            self.procs[route] = subprocess.Popen(
                [*command, base + route],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )

    def results(self) -> list[RouteResult]:
        out = []
        for route, proc in self.procs.items():
            try:
                text, _ = proc.communicate(timeout=self.seconds + 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                text, _ = proc.communicate()
            out.append(parse_wrk(route, self.clients[route], text))
        return out

    def kill(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def report(results: list[RouteResult], loadgen: str) -> None:
    print(f"\nresults ({loadgen}); latency in ms")
    head = f"  {'route':<10} {'clients':>7} {'requests':>9} {'req/s':>8}"
    print(f"{head} {'p50':>8} {'p99':>8} {'max':>8}  errors")
    for r in results:
        errs = sum(r.errors.values())
        detail = f" ({', '.join(f'{k} {v}' for k, v in r.errors.most_common())})" if errs else ""
        print(
            f"  {r.route:<10} {r.clients:>7} {r.requests:>9,} {r.rps:>8,.1f} {ms(r.p50):>8} "
            f"{ms(r.p99):>8} {ms(r.max):>8}  {errs}{detail}"
        )
    errors = sum(sum(r.errors.values()) for r in results)
    requests = sum(r.requests for r in results)
    rps = sum(r.rps for r in results)
    top = max((r.max for r in results), default=float("nan"))
    if all(r.latencies or not r.requests for r in results):  # python: the real mixture
        merged = sorted(x for r in results for x in r.latencies)
        p50, p99, bound = ms(pct(merged, 50)), pct(merged, 99), ""
    else:  # wrk: per route only; the mixture's p99 is at most the larger route p99
        p50, p99, bound = "-", max(r.p99 for r in results), "<="
    clients = sum(r.clients for r in results)
    print(
        f"  {'total':<10} {clients:>7} {requests:>9,} {rps:>8,.1f} {p50:>8} "
        f"{bound + ms(p99):>8} {ms(top):>8}  {errors}"
    )
    met = errors == 0 and requests > 0 and p99 < 0.1
    print(
        f"  TARGET no errors and p99 < 100 ms: {'met' if met else 'NOT met'} "
        f"({errors} error(s), p99 {bound}{ms(p99)} ms)",
        flush=True,
    )


# --- CPU and profiles ------------------------------------------------------------------------


def actor_pid(handle: Any) -> int | None:
    import ray

    try:
        call = handle.__ray_call__.remote(lambda _self: __import__("os").getpid())
        return int(ray.get(call, timeout=30))
    except Exception as exc:
        print(f"  (pid via __ray_call__ failed: {type(exc).__name__}: {exc})")
        return None


def serve_pids() -> dict[str, int]:
    """The Serve processes among this benchmark's descendants (other Rays may be running)."""
    titles = {"ray::ProxyActor": "serve_proxy", "ray::ServeReplica": "serve_replica"}
    titles["ray::ServeController"] = "serve_controller"
    found: dict[str, int] = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            continue
        for prefix, name in titles.items():
            if cmd and cmd[0].startswith(prefix):
                found[name] = proc.pid
    return found


def watched_pids(rt: Any) -> dict[str, int]:
    pids = serve_pids()
    for name in ("database", "scheduler", "config_manager"):
        pid = actor_pid(rt.components()[name])
        if pid is not None:
            pids[name] = pid
    return pids


@dataclass
class CpuMeter:
    """CPU seconds of given processes, of this process's children that exited meanwhile
    (the wrk processes), and of the whole machine between start() and stop() (shares of one
    core: 100% = one core busy)."""

    pids: dict[str, int]
    reaped: str | None = None  # the name for the CPU of children reaped in between
    began: float = 0.0
    first: dict[str, float] = field(default_factory=dict)
    share: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    machine: float = 0.0

    def start(self) -> None:
        self.began, self.first = time.perf_counter(), self._sample()

    def stop(self) -> None:
        self.wall = wall = max(time.perf_counter() - self.began, 1e-9)
        end = self._sample()
        self.share = {k: (end[k] - self.first[k]) / wall for k in end if k in self.first}
        self.machine = self.share.pop("(machine)")

    def report(self) -> None:
        parts = sorted(self.share.items(), key=lambda kv: -kv[1])
        text = ", ".join(f"{k} {v * 100:.0f}%" for k, v in parts)
        cores = psutil.cpu_count() or 1
        print(f"  CPU during the load ({self.wall:.0f}s, % of one core): {text}")
        print(f"    machine busy {self.machine * 100:.0f}% of {cores * 100}% (others' work too)")

    def _sample(self) -> dict[str, float]:
        out = {}
        for name, pid in self.pids.items():
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            out[name] = t.user + t.system
        if self.reaped:
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            out[self.reaped] = usage.ru_utime + usage.ru_stime
        out["(machine)"] = _busy()
        return out


def _busy() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


class Profiler:
    """py-spy record (raw collapsed stacks) of the proxy, the replica and the Database."""

    WHO = ("serve_proxy", "serve_replica", "database")

    def __init__(self, folder: Path | None, pids: dict[str, int], seconds: float) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if folder is None or py_spy is None:
            if folder is not None:
                print("  (py-spy not found next to this python: no profile)")
            return
        folder.mkdir(parents=True, exist_ok=True)
        for name in self.WHO:
            if name not in pids:
                continue
            out = folder / f"{name}.txt"
            command = [py_spy, "record", "-p", str(pids[name]), "-o", str(out), "-f", "raw"]
            command += ["-d", str(max(1, int(seconds))), "-r", "50", "--nonblocking"]
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append((name, proc, out))
        print(f"  py-spy recording {', '.join(n for n, _, _ in self.procs)}", flush=True)

    def finish(self) -> None:
        for name, proc, out in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if out.exists():
                summarise_profile(name, out)


def _frame(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = frame.partition(" (")
    file = Path(where.rstrip(")").rsplit(":", 1)[0]).name if where else ""
    return f"{name} ({file})" if file else name


def summarise_profile(label: str, path: Path, top: int = 10) -> None:
    """The hottest leaf frames and the hottest frames anywhere on the stack (inclusive)."""
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n, frames = int(count), stack.split(";")[1:]  # [0] is the thread
        if not frames:
            continue
        total += n
        leaf[_frame(frames[-1])] += n
        for key in {_frame(f) for f in frames}:
            inclusive[key] += n
    if not total:
        print(f"  profile {label}: no samples")
        return
    print(f"  profile {label}: {total} samples (active threads; idle waits excluded)")
    print("    leaf:      " + "; ".join(f"{k} {v / total:.0%}" for k, v in leaf.most_common(top)))
    busy = [(k, v) for k, v in inclusive.most_common() if v < total][:top]
    print("    inclusive: " + "; ".join(f"{k} {v / total:.0%}" for k, v in busy))


# --- main ------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, rt: Any, base: str) -> None:
    half = args.clients // 2
    clients = {ROUTES[0]: args.clients - half, ROUTES[1]: half}
    wrk = shutil.which("wrk")
    loadgen = args.loadgen if args.loadgen != "auto" else ("wrk" if wrk else "python")
    if loadgen == "wrk" and wrk is None:
        raise SystemExit("--loadgen wrk: wrk is not on PATH (apt-get install -y wrk)")
    pids = watched_pids(rt)
    print(f"  pids: {pids}")
    print(
        f"\nload: {loadgen}, {args.clients} clients ({clients[ROUTES[0]]} on GET {ROUTES[0]}, "
        f"{clients[ROUTES[1]]} on GET {ROUTES[1]}) for {args.seconds:g}s",
        flush=True,
    )
    profiler = Profiler(args.profile, pids, args.seconds)
    if loadgen == "wrk":
        assert wrk is not None
        meter = CpuMeter(pids, reaped="wrk (both)")
        meter.start()
        load = WrkLoad(wrk, base, clients, args.seconds, args.timeout)
        try:
            results = load.results()
        finally:
            load.kill()
    else:
        meter = CpuMeter({**pids, "python loadgen": os.getpid()})
        meter.start()
        results = python_load(base, clients, args.seconds, args.timeout)
    meter.stop()
    report(results, loadgen)
    meter.report()
    profiler.finish()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200, help="connections, half per route")
    parser.add_argument("--seconds", type=float, default=20.0, help="load duration")
    parser.add_argument("--runs", type=int, default=1000, help="runs put in history first")
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request (s)")
    parser.add_argument("--fill-budget", type=float, default=300.0, help="history wait (s)")
    parser.add_argument("--profile", type=Path, help="py-spy the servers; raw stacks go here")
    parser.add_argument(
        "--max-ongoing",
        type=int,
        help="deploy the app with this max_ongoing_requests (default: the app's own)",
    )
    args = parser.parse_args(argv)
    if args.clients < 2:
        parser.error("--clients must be at least 2 (half per route)")

    import ray

    tmp = Path(tempfile.mkdtemp(prefix="tg_api_bench_"))
    began = time.perf_counter()
    server = ServerProcess()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"source at {server.url}/items, API at {base}, {psutil.cpu_count()} cores", flush=True)
    rt = None
    try:
        names = [f"api_{i:03d}" for i in range(args.jobs)]
        rt = start_runtime(tmp, names, server.url, port)
        start_serve(rt, base, args.max_ongoing)
        fill_history(rt, names, args.runs, args.fill_budget)
        warm_up(base, {"Authorization": f"Bearer {TOKEN}"})
        measure(args, rt, base)
    finally:
        if rt is not None:
            try:
                stop_runtime(rt)
            except Exception as exc:
                print(f"  runtime.stop failed: {type(exc).__name__}: {exc}")
        if ray.is_initialized():
            ray.shutdown()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nwhole benchmark: {time.perf_counter() - began:.0f}s")


if __name__ == "__main__":
    main()
