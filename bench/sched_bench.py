"""Scheduler benchmark: trigger lateness under many schedules, and manual dispatch throughput.

    .venv/bin/python bench/sched_bench.py [--jobs 1000] [--interval 10] [--seconds 60]
        [--manual 10000] [--engines 2] [--slots 8] [--burst] [--only a|b] [--b-budget 240]
        [--profile DIR] [--quick]

Run by hand, never by the tests. Everything on 127.0.0.1: a trivial source (an ASGI app on
uvicorn, in its own process) answers `[{"id": 1}]` at /items; one local Ray; turbo-giggle's
actors started by `runtime.start` from job files written into a temporary configs folder.

(a) --jobs jobs, each `schedule: {interval: --interval, overlap: skip, catchup: none, anchor}`,
    all appending to table `bench`, for --seconds. The anchors spread the jobs evenly over the
    interval (1,000 jobs every 10 s: one due every 10 ms, 100 runs/s); with --burst there is
    no anchor and every job fires at the same instant: a burst of --jobs runs each interval. Afterwards
    (up to one more interval of drain, then a graceful stop) `tg.runs` is read from the
    DuckDB file: lateness = started_at - scheduled_for of the ticks inside the window (p50,
    p99, max), runs per state, ticks never created, duplicate (job, scheduled_for) rows.
(b) --manual `scheduler.trigger(job)` calls fired at once over 100 jobs (max_active_runs
    high), then ray.get of all of them; dispatch throughput = runs / (last started_at - first
    queued_at), and to succeeded = runs / (last finished_at - first queued_at). Bounded by
    --b-budget seconds: what has not finished by then is reported as such (partial rates).

Both: CPU of each actor process (psutil, % of one core) over the phase, and with --profile
py-spy records of the Scheduler and Database (and engine 0, Broker) summarised as top frames.
Targets (2 cores): lateness p99 < 50 ms in (a); >= 1,000 runs/s dispatched in (b).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# benchkit first: it keeps the local Ray on 127.0.0.1, and the actors' log level at WARNING
# unless --log-level says otherwise (every run logs 3+ INFO lines from the Scheduler)
from benchkit import (
    CpuMeter,
    Profiler,
    ServerProcess,
    actor_pid,
    descendant_pids,
    parse_args,
    pct,
    psutil,
    read_stacks,
    start_runtime,
    stop_runtime,
    trivial_job,
    write_jobs,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# --- helpers: figures, processes, profiles ---------------------------------------------------


def ms(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "-"
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def component_pids(rt: Any) -> dict[str, int]:
    """{name: pid} of every actor of the runtime, the broker's shared work queue included."""
    import ray

    pids: dict[str, int] = {}
    titles = {"scheduler": "ray::Scheduler", "database": "ray::Database"}
    for name, handle in rt.components().items():
        if handle is None:
            continue
        pid = actor_pid(handle)
        if pid is None and name in titles:  # the process title Ray gives actor workers
            pid = descendant_pids({titles[name]: name}).get(name)
        if pid is not None:
            pids[name] = pid
    try:  # idempotent: returns the Queue the engines already read
        queue = ray.get(rt.broker.subscribe.remote("triggers", "engines", shared=True), timeout=30)
        pid = actor_pid(queue.actor)
        if pid is not None:
            pids["work_queue"] = pid
    except Exception as exc:
        print(f"  (work queue pid unknown: {exc})")
    return pids


PROFILED = ("scheduler", "database", "engine_0", "broker")


def profile(profiler: Profiler, pids: dict[str, int], label: str, seconds: float) -> None:
    """py-spy windows of some actor processes."""
    if not profiler.on:
        return
    for name in PROFILED:
        if name in pids:
            profiler.record(f"{label} {name}", pids[name], seconds, f"{label}_{name}.txt")
    print(f"  py-spy: recording {label} for {seconds:.0f}s", flush=True)


def summarise_profile(label: str, path: Path, top: int = 12) -> None:
    """Samples per thread, the hottest leaf frames, and the hottest turbo-giggle frames."""
    stacks = read_stacks(path, inclusive_of="tg_actors/")
    total = stacks.total
    if not total:
        print(f"  profile {label}: no samples")
        return
    print(f"  profile {label}: {total} samples at 100 Hz (busy threads only) -> {path}")
    for name, n in stacks.threads.most_common(4):
        print(f"    thread {name[:60]}: {n / total * 100:.0f}%")
    print("    top leaf frames:")
    for name, n in stacks.leaf.most_common(top):
        print(f"      {n / total * 100:5.1f}%  {name}")
    print("    top turbo-giggle frames (inclusive):")
    for name, n in stacks.inclusive.most_common(top):
        print(f"      {n / total * 100:5.1f}%  {name}")


# --- reading tg.runs --------------------------------------------------------------------------

RUN_COLS = "run_id, job, state, trigger, scheduled_for, queued_at, started_at, finished_at, engine"


@dataclass
class Runs:
    rows: list[dict[str, Any]]
    duplicates: int  # (job, scheduled_for) pairs with more than one run
    lost_updates: int  # open state but finished_at set: a commit overwritten afterwards


def read_runs(db_path: Path) -> Runs:
    """Every run from the closed DuckDB file, and two consistency counts."""
    import duckdb

    con = duckdb.connect(str(db_path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(f"SELECT {RUN_COLS} FROM tg.runs").fetchall()
        (dupes,) = con.execute(
            "SELECT count(*) FROM (SELECT job, scheduled_for FROM tg.runs"
            " GROUP BY job, scheduled_for HAVING count(*) > 1)"
        ).fetchone() or (0,)
        (lost,) = con.execute(
            "SELECT count(*) FROM tg.runs WHERE state IN ('queued', 'running', 'retrying')"
            " AND finished_at IS NOT NULL"
        ).fetchone() or (0,)
    finally:
        con.close()
    names = [c.strip() for c in RUN_COLS.split(",")]
    runs = []
    for row in rows:
        run = dict(zip(names, row, strict=True))
        for key in ("scheduled_for", "queued_at", "started_at", "finished_at"):
            if run[key] is not None:
                run[key] = run[key].astimezone(UTC)
        runs.append(run)
    return Runs(runs, int(dupes), int(lost))


def seconds_between(later: datetime | None, earlier: datetime | None) -> float | None:
    return None if later is None or earlier is None else (later - earlier).total_seconds()


def spread(values: Sequence[float]) -> str:
    top = max(values, default=float("nan"))
    return f"p50 {ms(pct(values, 50))}, p99 {ms(pct(values, 99))}, max {ms(top)}"


def engine_gaps(rows: list[dict[str, Any]]) -> list[float]:
    """Per engine, from one run's finished_at to the next run's started_at: the dispatch
    round trip (RunFinished -> Scheduler -> TriggerRun -> engine) while work is waiting."""
    by_engine: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["engine"] and r["started_at"] is not None:
            by_engine[r["engine"]].append(r)
    gaps = []
    for runs in by_engine.values():
        runs.sort(key=lambda r: r["started_at"])
        for before, after in zip(runs, runs[1:], strict=False):
            gap = seconds_between(after["started_at"], before["finished_at"])
            if gap is not None and 0 <= gap < 5:  # more: no work was waiting
                gaps.append(gap)
    return gaps


def report_consistency(runs: Runs) -> None:
    print(f"  duplicate (job, scheduled_for): {runs.duplicates}")
    if runs.lost_updates:
        print(
            f"  WARNING {runs.lost_updates} run(s) say queued/running/retrying but have "
            "finished_at set: their `succeeded` commit was overwritten by a later state write"
        )


# --- the runtime ------------------------------------------------------------------------------


def start_sched_runtime(
    tmp: Path, label: str, engines: int, schedules: bool, slots: int
) -> tuple[Any, Any]:
    from tg_actors.settings import Settings

    settings = Settings(
        configs=tmp / f"configs_{label}",
        db_path=tmp / f"sched_{label}.duckdb",
        namespace=f"sched_bench_{uuid.uuid4().hex[:6]}",
        engines=engines,
        engine_slots=slots,
    )
    return start_runtime(settings, schedules=schedules), settings


def all_pids(rt: Any, server: ServerProcess) -> dict[str, int]:
    pids = component_pids(rt)
    print(f"  pids: {pids}", flush=True)
    daemons = descendant_pids({"raylet": "raylet", "gcs_server": "gcs_server"})
    return {**pids, "source_server": server.proc.pid, **daemons}


def scheduler_status(rt: Any) -> dict[str, Any] | None:
    import ray

    try:
        return dict(ray.get(rt.scheduler.status.remote(), timeout=10))
    except Exception:
        return None


def status_text(status: dict[str, Any] | None) -> str:
    if status is None:
        return "scheduler status: no answer within 10s"
    return f"queue {status['queue_depth']}, runs in flight {status['running']}/{status['slots']}"


def db_counts(rt: Any, where: str = "", params: list[Any] | None = None) -> dict[str, int]:
    import ray

    sql = f"SELECT state, count(*) FROM tg.runs {where} GROUP BY state"
    try:
        rows = ray.get(rt.db.query.remote(sql, params), timeout=30)
    except Exception:
        return {}
    return {str(state): int(n) for state, n in rows}


def startup_floor(folder: Path, db_path: Path) -> None:
    """The anchor for runtime.start's figure: the same job files parsed and stored in one
    DuckDB transaction in this process, no Ray and no actors."""
    from tg_actors.config.files import load_jobs
    from tg_actors.store.duckdb import DuckStore

    began = time.perf_counter()
    report = load_jobs([folder])
    parsed = time.perf_counter()
    with DuckStore(db_path) as store:
        store.upsert_jobs([(n, spec.to_stored()) for n, (_, spec) in report.jobs.items()], "file")
    print(
        f"  floor, no Ray: {len(report.jobs)} job files parsed in {parsed - began:.1f}s, "
        f"stored in {time.perf_counter() - parsed:.1f}s",
        flush=True,
    )


# --- (a) many schedules --------------------------------------------------------------------


def phase_a(args: argparse.Namespace, server: ServerProcess, tmp: Path) -> None:
    import ray

    print(
        f"\n(a) {args.jobs} jobs every {args.interval:g}s "
        f"({args.jobs / args.interval:,.0f} runs/s, "
        f"{'all due at the same instant' if args.burst else 'anchors spread over the interval'}), "
        f"{args.seconds:g}s window, {args.engines} engines x {args.slots} slots",
        flush=True,
    )
    names = [f"sched_{i:05d}" for i in range(args.jobs)]
    # `schedule.anchor` spreads the jobs evenly over the interval: a steady 100 runs/s
    step = args.interval / args.jobs
    anchors = (
        None
        if args.burst
        else [(EPOCH + timedelta(seconds=i * step)).isoformat() for i in range(args.jobs)]
    )
    schedule = f"interval: {args.interval:g}s, overlap: skip, catchup: none"
    jobs = {
        name: trivial_job(
            name, server.url, schedule + (f", anchor: '{anchors[i]}'" if anchors else "")
        )
        for i, name in enumerate(names)
    }
    write_jobs(tmp / "configs_a", jobs)
    startup_floor(tmp / "configs_a" / "jobs", tmp / "floor.duckdb")
    rt, settings = start_sched_runtime(tmp, "a", args.engines, schedules=True, slots=args.slots)
    try:
        pids = all_pids(rt, server)
        profiler = Profiler(args.profile, rate=100, threads=True)
        window_start = datetime.now(UTC)
        window_end = window_start + timedelta(seconds=args.seconds)
        profile_at = time.monotonic() + min(15.0, args.seconds / 4)
        with CpuMeter(pids, hide_below=0.005) as meter:
            deadline = time.monotonic() + args.seconds
            next_report = time.monotonic() + 10
            while (now := time.monotonic()) < deadline:
                if profile_at and now >= profile_at:
                    profile(profiler, pids, "a", min(20.0, args.seconds / 2))
                    profile_at = 0.0
                if now >= next_report:
                    elapsed = args.seconds - (deadline - now)
                    print(f"  t+{elapsed:3.0f}s: {status_text(scheduler_status(rt))}", flush=True)
                    next_report += 10
                time.sleep(0.2)
        meter.report("(a) window")
        # drain: the window's runs get up to one more interval to start (new ticks keep firing)
        drain_until = time.monotonic() + args.interval
        waiting = -1
        while time.monotonic() < drain_until:
            where = "WHERE scheduled_for <= ? AND trigger = 'schedule'"
            waiting = db_counts(rt, where, [window_end]).get("queued", 0)
            if not waiting:
                break
            time.sleep(1.0)
        status = status_text(scheduler_status(rt))
        print(f"  after drain: {waiting} run(s) of the window still queued; {status}")
        metrics = ray.get(rt.scheduler.metrics.remote(), timeout=30)
        print(f"  Database group commits: {ray.get(rt.db.stats.remote(), timeout=30)}")
        profiler.finish(summarise_profile, wait=90)
        stopped_at = datetime.now(UTC)
    finally:
        stop_runtime(rt)
    report_a(args, read_runs(settings.db_path), window_start, window_end, stopped_at, metrics)


def report_a(
    args: argparse.Namespace,
    runs: Runs,
    window_start: datetime,
    window_end: datetime,
    stopped_at: datetime,
    metrics: dict[str, Any],
) -> None:
    interval = timedelta(seconds=args.interval)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    tick = ((window_start - epoch) // interval + 1) * interval + epoch
    ticks = []
    while tick <= window_end:
        ticks.append(tick)
        tick += interval
    inside = [
        r
        for r in runs.rows
        if r["trigger"] in ("schedule", "catchup")
        and window_start < r["scheduled_for"] <= window_end
    ]
    states = Counter(r["state"] for r in inside)
    expected = len(ticks) * args.jobs
    started = [seconds_between(r["started_at"], r["scheduled_for"]) for r in inside]
    late = [x for x in started if x is not None]
    queued = [seconds_between(r["queued_at"], r["scheduled_for"]) for r in inside]
    took = [seconds_between(r["finished_at"], r["started_at"]) for r in inside]
    never = [r for r in inside if r["started_at"] is None and r["state"] != "skipped"]
    print(f"\n(a) results: {len(ticks)} ticks in the window x {args.jobs} jobs = {expected} due")
    print(
        f"  runs created {len(inside)} ({expected - len(inside)} due tick(s) never created); "
        f"succeeded {states.get('succeeded', 0)}, failed {states.get('failed', 0)}, "
        f"skipped {states.get('skipped', 0)}; all states: {dict(sorted(states.items()))}"
    )
    met = "met" if late and pct(late, 99) < 0.05 else "NOT met"
    print(
        f"  LATENESS started_at - scheduled_for ({len(late)} runs started): {spread(late)}"
        f"   [target p99 < 50 ms: {met}]"
    )
    if never:
        lower = [(stopped_at - r["scheduled_for"]).total_seconds() for r in never]
        print(
            f"  + {len(never)} run(s) of the window never started before the stop (lateness at "
            f"least {ms(min(lower))} .. {ms(max(lower))}; not in the percentiles above)"
        )
    print(
        f"  queued_at - scheduled_for (run created): {spread([x for x in queued if x is not None])}"
    )
    print(f"  run duration finished_at - started_at: {spread([x for x in took if x is not None])}")
    print(
        f"  engine idle between runs (finished_at -> next started_at): {spread(engine_gaps(inside))}"
    )
    by_tick: dict[datetime, list[dict[str, Any]]] = defaultdict(list)
    for r in inside:
        by_tick[r["scheduled_for"]].append(r)
    print("  per tick: created / skipped / started; last queued_at, last started_at after the tick")
    for tick in ticks:
        rs = by_tick.get(tick, [])
        q = [seconds_between(r["queued_at"], tick) or 0.0 for r in rs]
        st = [seconds_between(r["started_at"], tick) or 0.0 for r in rs if r["started_at"]]
        skipped = sum(r["state"] == "skipped" for r in rs)
        nan = float("nan")
        print(
            f"    {tick:%H:%M:%S}: {len(rs):5} / {skipped:5} / {len(st):5};"
            f" {ms(max(q, default=nan)):>9}, {ms(max(st, default=nan)):>9}"
        )
    succeeded = [r for r in inside if r["state"] == "succeeded"]
    if succeeded:
        span = (max(r["finished_at"] for r in succeeded) - window_start).total_seconds()
        print(
            f"  runs succeeded per second (window start -> last finish): {len(succeeded) / span:,.1f}"
        )
    report_consistency(runs)
    snap = metrics.get("lateness", {})
    if snap.get("count"):
        mean = snap["sum"] / snap["count"] * 1000
        print(
            f"  the Scheduler's own lateness histogram: {snap['count']} runs, mean {mean:,.0f} ms"
        )


# --- (b) a flood of manual triggers ---------------------------------------------------------


def phase_b(args: argparse.Namespace, server: ServerProcess, tmp: Path) -> None:
    jobs = min(100, args.manual)
    print(
        f"\n(b) {args.manual} manual triggers at once over {jobs} jobs, {args.engines} engines "
        f"(budget {args.b_budget:g}s)",
        flush=True,
    )
    names = [f"manual_{i:03d}" for i in range(jobs)]
    write_jobs(tmp / "configs_b", {name: trivial_job(name, server.url) for name in names})
    rt, settings = start_sched_runtime(tmp, "b", args.engines, schedules=False, slots=args.slots)
    try:
        pids = all_pids(rt, server)
        profiler = Profiler(args.profile, rate=100, threads=True)
        began = time.monotonic()
        deadline = began + args.b_budget
        with CpuMeter(pids, hide_below=0.005) as whole:
            with CpuMeter(pids, hide_below=0.005) as triggering:
                refs = [rt.scheduler.trigger.remote(names[i % jobs]) for i in range(args.manual)]
                print(f"  {args.manual} trigger calls fired in {time.monotonic() - began:.2f}s")
                profile(profiler, pids, "b_trigger", 20)
                returned = await_triggers(rt, refs, began, deadline)
            triggering.report("(b) while trigger calls were pending")
            profile(profiler, pids, "b_drain", 20)
            with CpuMeter(pids, hide_below=0.005) as draining:
                left = await_drain(rt, returned, began, deadline)
            draining.report("(b) after the trigger calls returned")
        whole.report("(b) whole phase")
        if left:
            print(f"  budget of {args.b_budget:g}s spent with work left: {left}")
        import ray

        print(f"  Database group commits: {ray.get(rt.db.stats.remote(), timeout=30)}")
        profiler.finish(summarise_profile, wait=90)
    finally:
        stop_runtime(rt)
    report_b(args, read_runs(settings.db_path))


def await_triggers(rt: Any, refs: list[Any], began: float, deadline: float) -> int:
    """Wait (bounded) for every trigger() call; returns how many returned."""
    import ray

    pending = refs
    next_report = time.monotonic() + 5
    while pending and time.monotonic() < deadline:
        wait = max(0.01, min(1.0, deadline - time.monotonic()))
        _done, pending = ray.wait(pending, num_returns=len(pending), timeout=wait)
        if time.monotonic() >= next_report:
            print(
                f"  t+{time.monotonic() - began:4.0f}s: {len(refs) - len(pending)} trigger calls "
                f"returned; {status_text(scheduler_status(rt))}",
                flush=True,
            )
            next_report += 5
    waiting = set(pending)
    errors = 0
    for ref in refs:
        if ref not in waiting:
            try:
                ray.get(ref, timeout=5)
            except Exception:
                errors += 1
    returned = len(refs) - len(pending)
    seconds = time.monotonic() - began
    print(
        f"  trigger calls: {returned} returned in {seconds:.1f}s ({returned / seconds:,.0f} "
        f"calls/s), {errors} error(s), {len(pending)} still pending",
        flush=True,
    )
    return returned


def await_drain(rt: Any, expected: int, began: float, deadline: float) -> dict[str, int]:
    """Until every run ended or the Scheduler is idle (twice in a row) or the budget is
    spent; returns the open runs per state when the budget ran out, else {}."""
    next_report = time.monotonic() + 5
    idle = 0
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = db_counts(rt)
        done = sum(counts.get(s, 0) for s in ("succeeded", "failed", "cancelled"))
        status = scheduler_status(rt)
        quiet = status is not None and not status["queue_depth"] and not status["running"]
        idle = idle + 1 if quiet else 0
        if done >= expected or idle >= 2:
            return {}
        if time.monotonic() >= next_report:
            spent = time.monotonic() - began
            rate = done / spent
            eta = f"~{(expected - done) / rate:,.0f}s more" if rate else "?"
            print(
                f"  t+{spent:4.0f}s: {done} runs ended ({rate:,.1f}/s since the first trigger; "
                f"the rest in {eta}); {status_text(status)}",
                flush=True,
            )
            next_report += 5
        time.sleep(0.5)
    return {k: v for k, v in counts.items() if k in ("queued", "running", "retrying")}


def report_b(args: argparse.Namespace, runs: Runs) -> None:
    manual = [r for r in runs.rows if r["trigger"] == "manual"]
    states = Counter(r["state"] for r in manual)
    print(
        f"\n(b) results: {len(manual)} runs created of {args.manual} triggered; "
        f"by state: {dict(sorted(states.items()))}"
    )
    if not manual:
        return
    first_q = min(r["queued_at"] for r in manual)
    last_q = max(r["queued_at"] for r in manual)
    queueing = max((last_q - first_q).total_seconds(), 1e-9)
    print(
        f"  queueing: first -> last queued_at {queueing:.1f}s "
        f"({len(manual) / queueing:,.0f} runs created/s)"
    )
    started = [r for r in manual if r["started_at"] is not None]
    if started:
        last_s = max(r["started_at"] for r in started)
        span = (last_s - first_q).total_seconds()
        rate = len(started) / span
        print(
            f"  DISPATCH queued -> running: {len(started)} runs, first queued_at -> last "
            f"started_at {span:.1f}s = {rate:,.1f} runs/s"
            f"   [target >= 1,000/s: {'met' if rate >= 1000 else 'NOT met'}]"
        )
        after = [r for r in started if r["started_at"] > last_q]
        if after:
            d = (last_s - last_q).total_seconds()
            print(
                f"    after the last run was queued: {len(after)} started in {d:.1f}s "
                f"= {len(after) / d:,.1f} runs/s"
            )
        waits = [seconds_between(r["started_at"], r["queued_at"]) or 0.0 for r in started]
        print(f"    queued_at -> started_at per run: {spread(waits)}")
    finished = [r for r in manual if r["state"] == "succeeded" and r["finished_at"] is not None]
    if finished:
        last_f = max(r["finished_at"] for r in finished)
        span = (last_f - first_q).total_seconds()
        print(
            f"  queued -> succeeded: {len(finished)} runs, first queued_at -> last finished_at "
            f"{span:.1f}s = {len(finished) / span:,.1f} runs/s"
        )
        took = [seconds_between(r["finished_at"], r["started_at"]) or 0.0 for r in finished]
        print(f"    run duration finished_at - started_at: {spread(took)}")
        print(
            f"    engine idle between runs (finished_at -> next started_at): {spread(engine_gaps(manual))}"
        )
    report_consistency(runs)


# --- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="(a) scheduled jobs")
    parser.add_argument("--interval", type=float, default=10.0, help="(a) seconds between ticks")
    parser.add_argument("--seconds", type=float, default=60.0, help="(a) measured window")
    parser.add_argument("--manual", type=int, default=10_000, help="(b) manual triggers")
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--slots", type=int, default=8, help="runs per engine at once")
    parser.add_argument(
        "--burst", action="store_true", help="(a) every job due at the same instant (no anchors)"
    )
    parser.add_argument("--only", choices=("a", "b"))
    parser.add_argument("--b-budget", type=float, default=240.0, help="(b) give up after (s)")
    parser.add_argument("--profile", type=Path, help="py-spy the actors; raw stacks go here")
    parser.add_argument("--log-level", default=None, help="TG_LOG_LEVEL of the actors")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    quick = {"jobs": 50, "interval": 2.0, "seconds": 6.0, "manual": 200, "b_budget": 60.0}
    args = parse_args(parser, argv, **quick)
    if args.log_level:
        os.environ["TG_LOG_LEVEL"] = args.log_level.upper()

    import ray

    tmp = Path(tempfile.mkdtemp(prefix="tg_sched_bench_"))
    began = time.perf_counter()
    server = ServerProcess()
    print(
        f"source at {server.url}/items, work folder {tmp}, {psutil.cpu_count()} cores, "
        f"actors' log level {os.environ['TG_LOG_LEVEL']}",
        flush=True,
    )
    try:
        if args.only in (None, "a"):
            phase_a(args, server, tmp)
        if args.only in (None, "b"):
            phase_b(args, server, tmp)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        server.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nwhole benchmark: {time.perf_counter() - began:.0f}s")


if __name__ == "__main__":
    main()
