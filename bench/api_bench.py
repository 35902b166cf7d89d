"""HTTP API benchmark: many concurrent clients on GET /api/runs and GET /api/jobs.

    .venv/bin/python bench/api_bench.py [--clients 200] [--seconds 20] [--runs 1000]
        [--jobs 10] [--loadgen auto|wrk|python] [--timeout 10] [--max-ongoing N]
        [--profile DIR] [--quick]

Run by hand, never by the tests. Everything on 127.0.0.1: a trivial source (an ASGI app on
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

Scenario `trigger` (the command path: `POST /api/jobs/{name}/runs`, i.e. trigger a run):

    .venv/bin/python bench/api_bench.py --scenario trigger [--jobs 10] [--triggers 300]
        [--trigger-clients 20] [--trigger-seconds 5] [--trigger-total 1000] [--timeout 10]
        [--fill-budget 300] [--max-ongoing N] [--quick]

The same start-up (the trivial source, runtime.start from --jobs job files, the Serve app), no
history fill (--runs is not used), then with the bearer token, over the jobs in turn:
0. warm-up: one trigger per job, not counted; then a drain.
1. sequential: one client (one connection) sends --triggers triggers one after the other.
2. concurrent: --trigger-clients clients, one connection each, in a closed loop until
   --trigger-seconds have passed or --trigger-total triggers were sent, whichever first.
Each answer is 202 with `{"run_id": ...}`: per request the latency, the status and whether
the answer carried a run_id are kept; p50/p99/max are of the 202 answers, errors (other
statuses, transport errors, timeouts) are counted apart, and so are 202s without a run_id.
The jobs are manual with `max_active_runs: 100000` (benchkit.trivial_job; `overlap` is a
schedule's setting, a manual trigger always queues a run), so every trigger queues a run that
reads `[{"id": 1}]`: after each phase the bench waits (bounded by --fill-budget) until every
run triggered so far has ended and prints how long that took and the runs' states, so runs of
one phase do not pile into the next (runs do still execute during a phase, as they would in
use). Also printed: which tg_actors the driver and the Scheduler actor imported (to tell which
tree was measured), and the CPU of the Serve proxy and replica, the Broker, the Scheduler, the
Database and the load generator over each phase (`others`: the machine's other load). The
load generator (asyncio + httpx in this process) shares the 2 cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from benchkit import (  # first: it keeps the local Ray on 127.0.0.1
    CpuMeter,
    Profiler,
    ServerProcess,
    actor_pid,
    descendant_pids,
    free_port,
    ms,
    parse_args,
    pct,
    psutil,
    read_stacks,
    start_runtime,
    tear_down,
    timer,
    trivial_job,
    wait_http,
    write_jobs,
)

ROUTES = ("/api/runs", "/api/jobs")
TOKEN = f"bench-{uuid.uuid4().hex}"
ENDED = ("succeeded", "failed", "cancelled", "skipped")

# --- the runtime: jobs that each read the trivial source (benchkit.ServerProcess) ------------


def start_api_runtime(tmp: Path, names: list[str], url: str, port: int) -> Any:
    from tg_actors.settings import Settings

    write_jobs(tmp / "configs", {name: trivial_job(name, url) for name in names})
    settings = Settings(
        configs=tmp / "configs",
        db_path=tmp / "data" / "api_bench.duckdb",
        namespace=f"api_bench_{uuid.uuid4().hex[:6]}",
        port=port,
        api_token=TOKEN,
    )
    return start_runtime(settings)


def start_serve(rt: Any, base: str, max_ongoing: int | None) -> None:
    import serve.app as app_module
    from tg_actors import runtime

    original = app_module.build_app
    if max_ongoing is not None:  # the app as shipped, but with another max_ongoing_requests

        def build_app(settings: Any, token: str, head_resource: str | None = None) -> Any:
            shipped = app_module.TurboGiggleApp
            app_module.TurboGiggleApp = shipped.options(max_ongoing_requests=max_ongoing)  # type: ignore[attr-defined,misc]
            try:  # the shipped build_app (head resource, shareable settings) on that deployment
                return original(settings, token, head_resource)
            finally:
                app_module.TurboGiggleApp = shipped  # type: ignore[misc]

        app_module.build_app = build_app
    with timer(f"Serve app up at {base}"):
        try:  # on the main thread, as the tests do; serve.run returns once the app is up
            runtime.start_serve(rt)
        finally:
            app_module.build_app = original
        wait_http(f"{base}/api/health", 300, "the Serve app")


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

SERVE_TITLES = {
    "ray::ProxyActor": "serve_proxy",
    "ray::ServeReplica": "serve_replica",
    "ray::ServeController": "serve_controller",
}
PROFILED = ("serve_proxy", "serve_replica", "database")


def watched_pids(rt: Any) -> dict[str, int]:
    pids = descendant_pids(SERVE_TITLES)
    for name in ("database", "scheduler", "config_manager"):
        pid = actor_pid(rt.components()[name])
        if pid is not None:
            pids[name] = pid
    return pids


def summarise_profile(label: str, path: Path, top: int = 10) -> None:
    """The hottest leaf frames and the hottest frames anywhere on the stack (inclusive)."""
    stacks = read_stacks(path)
    total = stacks.total
    if not total:
        print(f"  profile {label}: no samples")
        return
    leaf = stacks.leaf.most_common(top)
    busy = [(k, v) for k, v in stacks.inclusive.most_common() if v < total][:top]
    print(f"  profile {label}: {total} samples (active threads; idle waits excluded)")
    print("    leaf:      " + "; ".join(f"{k} {v / total:.0%}" for k, v in leaf))
    print("    inclusive: " + "; ".join(f"{k} {v / total:.0%}" for k, v in busy))


# --- scenario trigger: the command path ----------------------------------------------------

TRIGGER_ROUTE = "/api/jobs/{name}/runs"


@dataclass
class TriggerResult:
    """One phase of triggers: per request (latency s, HTTP status or 0, carried a run_id)."""

    phase: str
    clients: int
    seconds: float = 0.0  # wall of the phase: first sent to last answered
    samples: list[tuple[float, int, bool]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def accepted(self) -> list[float]:
        return sorted(t for t, status, _ in self.samples if status == 202)

    @property
    def without_run_id(self) -> int:
        return sum(1 for _, status, has_id in self.samples if status == 202 and not has_id)


async def _trigger_once(client: httpx.AsyncClient, name: str, result: TriggerResult) -> None:
    began = time.perf_counter()
    status, has_id = 0, False
    try:
        response = await client.post(TRIGGER_ROUTE.format(name=name))
        status = response.status_code
        if status == 202:
            try:
                body = response.json()
                has_id = isinstance(body, dict) and bool(body.get("run_id"))
            except ValueError:
                pass
        else:
            result.errors[f"HTTP {status}"] += 1
    except httpx.HTTPError as exc:
        result.errors[type(exc).__name__] += 1
    result.samples.append((time.perf_counter() - began, status, has_id))


async def trigger_phase(
    base: str,
    names: list[str],
    phase: str,
    clients: int,
    total: int,
    seconds: float | None,
    timeout: float,
) -> TriggerResult:
    """`clients` closed-loop clients (one connection each) sending triggers over the jobs in
    turn, until `total` were sent or (if given) `seconds` have passed."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    result = TriggerResult(phase, clients)
    sent = 0
    began = time.perf_counter()
    deadline = began + seconds if seconds is not None else float("inf")

    async def loop() -> None:
        nonlocal sent
        async with httpx.AsyncClient(
            base_url=base, headers=headers, limits=limits, timeout=timeout
        ) as client:
            while sent < total and time.perf_counter() < deadline:
                name = names[sent % len(names)]
                sent += 1
                await _trigger_once(client, name, result)

    await asyncio.gather(*(loop() for _ in range(clients)))
    result.seconds = time.perf_counter() - began
    return result


def drain(rt: Any, runs: int, budget: float) -> dict[str, int]:
    """Wait (bounded) until `runs` runs have ended in tg.runs; prints how long it took."""
    began = time.monotonic()
    counts: dict[str, int] = {}
    while True:
        counts = run_counts(rt)
        ended = sum(counts.get(s, 0) for s in ENDED)
        if ended >= runs:
            break
        if time.monotonic() - began > budget:
            print(f"  WARNING drain budget of {budget:g}s spent: {ended}/{runs} runs ended")
            break
        time.sleep(0.2)
    print(
        f"  drained: {dict(sorted(counts.items()))} after {time.monotonic() - began:.1f}s",
        flush=True,
    )
    return counts


def report_triggers(results: list[TriggerResult]) -> None:
    print(f"\nresults (POST {TRIGGER_ROUTE}, python); latency in ms, of the 202 answers")
    head = f"  {'phase':<10} {'clients':>7} {'requests':>9} {'req/s':>8}"
    print(f"{head} {'p50':>8} {'p99':>8} {'max':>8}  errors  202 w/o run_id")
    for r in results:
        lat = r.accepted
        errs = sum(r.errors.values())
        detail = f" ({', '.join(f'{k} {v}' for k, v in r.errors.most_common())})" if errs else ""
        rps = len(r.samples) / r.seconds if r.seconds else float("nan")
        top = lat[-1] if lat else float("nan")
        print(
            f"  {r.phase:<10} {r.clients:>7} {len(r.samples):>9,} {rps:>8,.1f} "
            f"{ms(pct(lat, 50)):>8} {ms(pct(lat, 99)):>8} {ms(top):>8}  {errs}{detail}"
            f"  {r.without_run_id}"
        )
    print(flush=True)


def tree_of_tg_actors(rt: Any) -> None:
    """Which tg_actors the driver and the Scheduler actor imported (the tree measured)."""
    import ray

    import tg_actors

    where = str(Path(tg_actors.__file__).resolve().parent.parent)
    try:
        call = rt.scheduler.__ray_call__.remote(lambda _self: __import__("tg_actors").__file__)
        actor = str(Path(ray.get(call, timeout=30)).resolve().parent.parent)
    except Exception as exc:
        actor = f"? ({type(exc).__name__}: {exc})"
    print(f"  tg_actors from: driver {where}, Scheduler actor {actor}", flush=True)


def measure_triggers(args: argparse.Namespace, rt: Any, base: str, names: list[str]) -> None:
    tree_of_tg_actors(rt)
    pids = watched_pids(rt)
    broker = actor_pid(rt.components()["broker"])
    if broker is not None:
        pids["broker"] = broker
    print(f"  pids: {pids}")
    triggered = 0

    print(f"\nwarm-up: one trigger per job ({len(names)})", flush=True)
    warm = asyncio.run(trigger_phase(base, names, "warm-up", 1, len(names), None, args.timeout))
    triggered += len(warm.samples)
    print(
        f"  warm-up: {', '.join(ms(t) for t, _, _ in warm.samples)} ms; statuses "
        f"{dict(Counter(s for _, s, _ in warm.samples))}",
        flush=True,
    )
    drain(rt, triggered, args.fill_budget)

    print(f"\nsequential: 1 client, {args.triggers} triggers", flush=True)
    seq_meter = CpuMeter({**pids, "python loadgen": os.getpid()})
    seq_meter.start()
    seq = asyncio.run(
        trigger_phase(base, names, "sequential", 1, args.triggers, None, args.timeout)
    )
    seq_meter.stop()
    triggered += len(seq.samples)
    print(f"  {len(seq.samples)} triggers in {seq.seconds:.1f}s", flush=True)
    drain(rt, triggered, args.fill_budget)

    print(
        f"\nconcurrent: {args.trigger_clients} clients, closed loop, "
        f"{args.trigger_seconds:g}s or {args.trigger_total} triggers",
        flush=True,
    )
    meter = CpuMeter({**pids, "python loadgen": os.getpid()})
    meter.start()
    conc = asyncio.run(
        trigger_phase(
            base,
            names,
            "concurrent",
            args.trigger_clients,
            args.trigger_total,
            args.trigger_seconds,
            args.timeout,
        )
    )
    meter.stop()
    triggered += len(conc.samples)
    print(f"  {len(conc.samples)} triggers in {conc.seconds:.1f}s", flush=True)
    drain(rt, triggered, args.fill_budget)

    report_triggers([seq, conc])
    seq_meter.report("during the sequential phase")
    meter.report("during the concurrent phase")


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
    profiler = Profiler(args.profile, rate=50)
    for name in PROFILED:
        if name in pids:
            profiler.record(name, pids[name], args.seconds)
    if profiler.procs:
        print(f"  py-spy recording {', '.join(n for n, _, _ in profiler.procs)}", flush=True)
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
    meter.report("during the load")
    profiler.finish(summarise_profile)


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
    parser.add_argument("--scenario", choices=("load", "trigger"), default="load")
    parser.add_argument("--triggers", type=int, default=300, help="trigger: sequential count")
    parser.add_argument("--trigger-clients", type=int, default=20, help="trigger: concurrent")
    parser.add_argument("--trigger-seconds", type=float, default=5.0, help="trigger: at most")
    parser.add_argument("--trigger-total", type=int, default=1000, help="trigger: at most")
    quick: dict[str, Any] = {"clients": 20, "seconds": 3.0, "runs": 50, "jobs": 3}
    quick["fill_budget"] = 60.0
    if parser.parse_known_args(argv)[0].scenario == "trigger":
        quick |= {"triggers": 30, "trigger_clients": 5, "trigger_seconds": 2.0}
        quick["trigger_total"] = 200
    args = parse_args(parser, argv, **quick)
    if args.clients < 2:
        parser.error("--clients must be at least 2 (half per route)")

    tmp = Path(tempfile.mkdtemp(prefix="tg_api_bench_"))
    began = time.perf_counter()
    server = ServerProcess()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"source at {server.url}/items, API at {base}, {psutil.cpu_count()} cores", flush=True)
    rt = None
    try:
        names = [f"api_{i:03d}" for i in range(args.jobs)]
        rt = start_api_runtime(tmp, names, server.url, port)
        start_serve(rt, base, args.max_ongoing)
        if args.scenario == "trigger":
            measure_triggers(args, rt, base, names)
        else:
            fill_history(rt, names, args.runs, args.fill_budget)
            warm_up(base, {"Authorization": f"Bearer {TOKEN}"})
            measure(args, rt, base)
    finally:
        tear_down(rt, server, tmp)
    print(f"\nwhole benchmark: {time.perf_counter() - began:.0f}s")


if __name__ == "__main__":
    main()
