"""The one place Ray options live: start Ray, create every actor, start Serve, stop it all.

Actors are named in one namespace so the Serve app (and a restarted actor's peers) find
them by name. Control-plane actors ask for no CPU: on a 2-core machine an actor that needs a
whole CPU when none is free waits forever without a word.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ray

from tg_actors import logs
from tg_actors.broker.actor import Broker
from tg_actors.config.actor import ConfigManager
from tg_actors.engine.actor import control_group
from tg_actors.engine.pool import (
    EngineFactory,
    EnginePool,
    engine_id,
    engine_name,
    existing_engines,
)
from tg_actors.hosted import Hosted
from tg_actors.messages import (
    TOPIC_COMMANDS,
    TOPIC_CONFIG,
    TOPIC_CONTROL,
    TOPIC_STATUS,
    TOPIC_TRIGGERS,
)
from tg_actors.names import (
    BROKER,
    CONFIG,
    CONFIG_GROUP,
    DATABASE,
    DATABASE_GROUP,
    DB_RESOURCE,
    ENGINE_WORK_GROUP,
    LIMITER,
    POOL,
    POOL_GROUP,
    SCHEDULER,
    SERVE_APP,
)
from tg_actors.peer import Peer
from tg_actors.ratelimit.actor import RateLimiter
from tg_actors.scheduler.actor import GROUPS as SCHEDULER_GROUPS
from tg_actors.scheduler.actor import Scheduler
from tg_actors.settings import Settings
from tg_actors.store.actor import Database

log = logging.getLogger(__name__)

# the control plane stays on the DuckDB node (the head): losing a worker node never takes
# the broker or the Scheduler with it
_CONTROL: dict[str, Any] = {
    "num_cpus": 0,
    "max_restarts": -1,
    "lifetime": None,
    "resources": {DB_RESOURCE: 0.001},
}
# the shared work queue's actor, made by the broker: by it, on the head, so losing a worker
# node never empties the engines' work queue
_QUEUE: dict[str, Any] = {
    "num_cpus": 0,
    "max_restarts": -1,
    "resources": _CONTROL["resources"],
}


def engine_options(namespace: str, num_cpus: float) -> dict[str, Any]:
    """The engines' Ray options (the EnginePool adds each one's name). Detached: Ray kills an
    actor with its owner, and an engine must outlive a restart of its pool; spread over the
    nodes; `num_cpus` is TG_ENGINE_NUM_CPUS."""
    return {
        "namespace": namespace,
        "get_if_exists": True,
        "lifetime": "detached",
        "max_restarts": -1,
        "num_cpus": num_cpus,
        "scheduling_strategy": "SPREAD",
    }


@dataclass
class Runtime:
    """What is started. `start` fills it in as it goes, so a stop in the middle of start-up
    (a signal) stops exactly what was started; a handle still None was not."""

    settings: Settings
    broker: Any = None
    db: Any = None
    config: Any = None
    scheduler: Any = None
    pool: Any = None
    limiter: Any = None
    own_engines: list[Any] | None = None  # a one-off run's engines, made without a pool
    serving: bool = False
    token_file: str | None = None
    token: str | None = None  # the API token, for the sign-in link `tg up` prints
    token_new: bool = False  # generated at this start
    stopped: bool = False

    @property
    def engines(self) -> list[Any]:
        """The engines of now (their number changes at run time)."""
        if self.own_engines is not None:
            return list(self.own_engines)
        names = ray.get(self.pool.names.remote()) if self.pool is not None else []
        return [ray.get_actor(name, namespace=self.settings.namespace) for name in names]

    def components(self, engines: bool = True) -> dict[str, Any]:
        named = {"broker": self.broker, "database": self.db, "config_manager": self.config}
        # a hosted Scheduler (a one-off run's) is no actor: nothing to kill or look up
        if not isinstance(self.scheduler, Hosted):
            named["scheduler"] = self.scheduler
        named["rate_limiter"] = self.limiter
        named["engine_pool"] = self.pool
        if engines:
            named.update({f"engine_{i}": e for i, e in enumerate(self.engines)})
        return named


def init_ray(settings: Settings, *, one_off: bool = False) -> None:
    """Laptop mode (no address): our own local Ray on loopback. Otherwise join a cluster.
    `one_off` (`tg run`): a local Ray for one run starts no autoscaler monitor and no
    dashboard API server (`_lean_head`)."""
    if ray.is_initialized():
        return
    common: dict[str, Any] = {
        "namespace": settings.namespace,
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "runtime_env": {
            "worker_process_setup_hook": "tg_actors.logs.worker_setup",
            # the engines read these where they run: on a cluster's workers too
            "env_vars": settings.engine_env(),
        },
    }
    own_handlers: list[logging.Handler] = []
    if settings.log_format == "json":
        # every worker's root logger (and the driver's) writes JSON lines; the RunFields
        # filter of tg_actors.logs adds the run-state fields, which Ray's formatter writes
        common["logging_config"] = ray.LoggingConfig(encoding="JSON", log_level=_log_level())
        own_handlers = logs.hand_over_to_ray()
    try:
        if settings.address is None:
            # Ray reads this at import: callers set it before importing ray (cli.main,
            # conftest); here it still reaches the worker processes
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            cpus = max(2, os.cpu_count() or 2)
            with _lean_head(one_off):
                ray.init(
                    address="local",
                    num_cpus=cpus,
                    resources={DB_RESOURCE: 1},
                    # Ray would start a worker per CPU for tasks at once; our actors never
                    # use them (each is a process of its own), and on 2 cores their start-up
                    # is CPU taken from the actors' (~0.5 s each, 80 MiB each while idle)
                    _system_config={"prestart_worker_first_driver": False},
                    **common,
                )
        else:
            _join(settings.address, common)
            check_db_node()
    except BaseException:
        if not ray.is_initialized():
            logs.take_back(own_handlers)
        raise


@contextlib.contextmanager
def _lean_head(lean: bool) -> Iterator[None]:
    """`lean`: the head node that ray.init starts leaves out the autoscaler's monitor and the
    dashboard's API server, ~85 and ~120 MiB, each importing its modules (~0.5-1 s of CPU)
    while the actors start. A one-node Ray for one run has no use for either: it never
    scales, and no job is submitted to it nor its state listed over HTTP. ray.init does not
    pass RayParams' `no_monitor` on and starts the API server even with include_dashboard
    False, so Node.start_monitor and Node.start_api_server do nothing for the call (Ray's stop
    kills the processes it started, and neither is among them)."""
    if not lean:
        yield
        return
    node_class = ray._private.node.Node
    saved = {name: getattr(node_class, name) for name in ("start_monitor", "start_api_server")}
    for name in saved:
        setattr(node_class, name, lambda self, **_: None)
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(node_class, name, method)


def shutdown_ray() -> None:
    """ray.shutdown, without its one idle second: it stops a local Ray's processes one by one,
    each with a SIGTERM and up to 1 s to exit, and the autoscaler's monitor (of no use to a
    one-node Ray) takes all of it (measured: 1.0 s of the 1.4 s). It is ours, started by our
    ray.init: killed first. Any surprise in Ray's internals leaves plain ray.shutdown."""
    try:
        node = ray._private.worker._global_node
        if node is not None and node.is_head():
            for info in node.all_processes.get("monitor", []):
                info.process.kill()
                info.process.wait(5)
    except Exception as exc:
        log.debug("shutting Ray down: the monitor stays for ray.shutdown", exc_info=exc)
    ray.shutdown()


def _log_level() -> str:
    return os.environ.get("TG_LOG_LEVEL", "INFO").upper()


CLIENT_TRIES = 3


def _join(address: str, options: dict[str, Any]) -> None:
    """ray.init on a cluster. A Ray Client (`ray://`) server starts a process per client and
    answers "Initialization failure from server" when that process dies at birth (seen on a
    loaded machine): a new try gets a new one."""
    for attempt in range(1, CLIENT_TRIES + 1):
        try:
            ray.init(address=address, **options)
            return
        except ConnectionAbortedError as exc:
            if not address.startswith("ray://") or attempt == CLIENT_TRIES:
                raise
            log.warning("Ray Client at %s: %s; trying again", address, str(exc).splitlines()[0])
            ray.shutdown()
            time.sleep(attempt)


def check_db_node() -> None:
    """The Database and the control plane need the node that declares DB_RESOURCE: without
    one they would wait for it forever, without a word."""
    have = ray.cluster_resources().get(DB_RESOURCE, 0)  # type: ignore[no-untyped-call]
    if have < 1:
        raise RuntimeError(
            f"no node of this Ray cluster declares the custom resource {DB_RESOURCE!r}, which "
            "marks the node that holds the DuckDB file: start the head node with "
            f"`ray start --head --resources='{{\"{DB_RESOURCE}\": 1}}'` (see ray_cluster.yaml)"
        )


def consumer_groups(
    engine_ids: list[str], shared_work: bool = True
) -> list[tuple[str, str, bool, bool]]:
    """(topic, group, shared, lossy) of every consumer group of the actors themselves: a
    restarted broker re-creates them at once, so nothing published after the restart is lost.
    Engines added at run time join by themselves (their groups are lossy: a removed engine's
    group never holds publishers back). `shared_work`: the engines' group on `triggers` is a
    Ray queue they compete for (engine/work.py); a lone engine reads a plain group, and a
    one-off run (no ConfigManager, no pool) has no groups of theirs on `commands`."""
    groups = [
        (TOPIC_TRIGGERS, ENGINE_WORK_GROUP, shared_work, False),
        (TOPIC_STATUS, DATABASE_GROUP, False, False),
        (TOPIC_COMMANDS, DATABASE_GROUP, False, False),
    ]
    if shared_work:
        groups += [(TOPIC_COMMANDS, g, False, False) for g in (CONFIG_GROUP, POOL_GROUP)]
    groups += [(topic, group, False, False) for topic, group in SCHEDULER_GROUPS]
    groups += [(TOPIC_CONTROL, control_group(engine_id), False, True) for engine_id in engine_ids]
    return groups


def _actor(cls: type, name: str, namespace: str, **options: Any) -> Any:
    opts = {**_CONTROL, **options}
    opts["resources"] = {**_CONTROL["resources"], **options.get("resources", {})}
    opts = {k: v for k, v in opts.items() if v is not None}
    return ray.remote(cls).options(name=name, namespace=namespace, get_if_exists=True, **opts)


def start(
    settings: Settings,
    *,
    schedules: bool = True,
    serve_app: bool = True,
    one_off: bool = False,
    rt: Runtime | None = None,
) -> Runtime:
    """Create every actor (and the Serve app), load job files, start the scheduler. Returns
    once every actor has booted (engines included): a run triggered then is taken. `rt`: a
    Runtime to fill in as actors are made (`tg up` stops what it holds when a signal cuts
    start-up short). `one_off` (`tg run`): only the actors one run needs, no engine pool
    (nothing scales the engines), no rate limiter (one run: a job's rate_limit holds
    within the run, sources/http.local_limit) and no ConfigManager (no API changes jobs: the
    job files are stored from this process, load_folder), each a process of ~150 MiB and ~1 s
    of CPU to start; its Scheduler, which only this process calls, runs on a thread of this
    process (tg_actors/hosted.py) rather than in a worker of its own."""
    began = time.perf_counter()
    ns = settings.namespace
    rt = rt if rt is not None else Runtime(settings)
    # actors know each other by name (Peer), never by a handle passed to the constructor
    _kill_stale_engines(ns)
    engine_ids = [engine_id(i) for i in range(settings.engines)]
    rt.broker = broker = _actor(Broker, BROKER, ns).remote(
        settings.queue_maxsize,
        groups=consumer_groups(engine_ids, shared_work=not one_off),
        queue_options=_QUEUE,
    )
    if not one_off:
        rt.limiter = _actor(RateLimiter, LIMITER, ns).remote()
    rt.db = db = _actor(Database, DATABASE, ns, resources={DB_RESOURCE: 0.01}).remote(
        str(settings.db_path),
        Peer(BROKER, ns),
        settings.duckdb_memory_limit,
        settings.duckdb_checkpoint_threshold,
        lean=True,  # its own process: no pandas (tg_actors.unused)
    )
    limiter = None if one_off else Peer(LIMITER, ns)
    engines = EngineFactory(
        # a one-off run's engines are never scaled: they share no queue actor (engine/work.py)
        (Peer(DATABASE, ns), Peer(BROKER, ns), limiter, settings.engine_slots, not one_off),
        engine_options(ns, settings.engine_num_cpus),
    )
    if not one_off:
        rt.pool = _actor(EnginePool, POOL, ns).remote(
            ns,
            engines,
            Peer(BROKER, ns),
            Peer(SCHEDULER, ns),
            settings.stop_grace_seconds,
            db=Peer(DATABASE, ns),
        )
    if not one_off:  # a one-off run has no API: its files are stored from here (load_folder)
        rt.config = _actor(ConfigManager, CONFIG, ns).remote(
            settings.shareable(), Peer(DATABASE, ns), Peer(BROKER, ns)
        )
    # most of start-up is worker processes starting (Python, Ray, our modules: ~1 s of CPU
    # each): the engines start alongside the others, not after them (they boot by
    # themselves, finding their peers by name and trying again until they answer)
    if rt.pool is not None:
        scaled = [rt.pool.scale.remote(settings.engines)]
    else:
        rt.own_engines = [engines.create(i) for i in range(settings.engines)]
        scaled = [engine.start.remote() for engine in rt.own_engines]
    if not schedules and not one_off:
        # nothing fires by itself, so the Scheduler may boot before the job files are
        # loaded; what is stored after its boot reaches it on the config topic (its group
        # exists from the broker's start), and a job triggered before that is read from
        # DuckDB (Scheduler._learn). With schedules it starts after the files are in DuckDB,
        # so that no tick fires an old version. A one-off run's is hosted in this process
        # (no worker to start early): made below, once its peers answer
        rt.scheduler = _scheduler(settings, schedules, pool=rt.pool is not None)
    if serve_app:
        # while those processes start: the API answers early (health "starting", 503), and
        # the demo source (it lives in the Serve app) is there before the first tick
        start_serve(rt)
    booted = [broker.ping.remote(), db.start.remote()]
    booted += [actor.ping.remote() for actor in (rt.config, rt.limiter) if actor is not None]
    ray.get(booted)
    report = ray.get(rt.config.load_dir.remote()) if rt.config is not None else load_folder(rt)
    for error in report["errors"]:
        print(error)
    if one_off:  # hosted: it boots while the engine may still be starting
        rt.scheduler = _scheduler(settings, schedules, pool=False, hosted=True)
    ray.get(scaled)
    if rt.scheduler is None:
        rt.scheduler = _scheduler(settings, schedules, pool=rt.pool is not None)
    # the Scheduler boots by itself (also after a restart): reloads jobs and open runs
    resolve(rt.scheduler.start.remote())
    log.info("runtime up in %.1fs: jobs %s", time.perf_counter() - began, report["loaded"])
    return rt


def load_folder(rt: Runtime) -> dict[str, Any]:
    """ConfigManager.load_dir for a one-off run, in this process: the jobs folder stored in
    one transaction and announced on `config`. {"loaded": [...], "errors": [...]}."""
    from tg_actors.config.files import announcements, folder_jobs, stored_after

    folder = rt.settings.jobs_dir
    report = folder_jobs(folder, stored_after(ray.get(rt.db.list_jobs.remote())))
    if report is None:
        log.warning("jobs folder %s does not exist; no job files loaded", folder)
        return {"loaded": [], "errors": []}
    stored = [(spec.name, spec.to_stored()) for _path, spec in report.jobs.values()]
    if stored:
        done = ray.get(rt.db.upsert_jobs.remote(stored, "file"))
        for batch in announcements(stored, done):
            ray.get(rt.broker.publish.remote(TOPIC_CONFIG, batch))
    return {"loaded": sorted(report.jobs), "errors": [str(e) for e in report.errors]}


def _scheduler(settings: Settings, schedules: bool, pool: bool, hosted: bool = False) -> Any:
    """The Scheduler actor, or (`hosted`: a one-off run's, which only this process calls) the
    same class on a thread of this process (tg_actors/hosted.py), a worker process fewer."""
    ns = settings.namespace
    args = (
        Peer(DATABASE, ns),
        Peer(BROKER, ns),
        [Peer(engine_name(i), ns) for i in range(settings.engines)],
        settings.tick_seconds,
        schedules,
        settings.lease_seconds,
        settings.alert_webhook_url,
    )
    options: dict[str, Any] = {
        "slots": settings.engine_slots,
        "pool": Peer(POOL, ns) if pool else None,
        "alert_format": settings.alert_format,
    }
    if hosted:
        return Hosted(lambda: Scheduler(*args, **options), SCHEDULER)
    return _actor(Scheduler, SCHEDULER, ns).remote(*args, **options)


def resolve(pending: Any, timeout: float | None = None) -> Any:
    """The result of an actor call: a Ray ObjectRef (or a list of them) or a hosted object's
    Future (tg_actors/hosted.py). Raises what the call raised; TimeoutError past `timeout`."""
    if isinstance(pending, concurrent.futures.Future):
        try:
            return pending.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"no answer within {timeout}s") from None
    return ray.get(pending, timeout=timeout)


def _kill_stale_engines(namespace: str) -> None:
    """Engines are detached (they outlive a restart of their pool): any left in the namespace
    by an earlier session whose driver died hold handles to actors that died with it."""
    for index in existing_engines(namespace):
        try:
            ray.kill(ray.get_actor(engine_name(index), namespace=namespace), no_restart=True)
        except ValueError:  # gone meanwhile
            continue
        log.warning("stopped %s, left over from an earlier session", engine_name(index))


def start_serve(rt: Runtime) -> None:
    from ray import serve

    from serve.app import build_app
    from serve.auth import ensure_token

    s = rt.settings
    existed = s.known_token() is not None  # an empty or short token file is replaced
    token, token_file = ensure_token(s)
    quiet: dict[str, Any] = {"log_level": "WARNING", "enable_access_log": False}
    if s.log_format == "json":
        quiet["encoding"] = "JSON"  # the Serve app's own log files: JSON lines too
        logs.serve_driver_json()  # and what Serve logs in this process
    rt.serving = True  # from here a stop shuts Serve down, also a half-started one
    # one proxy, on the head (where `tg up` prints the URL): not one per node with a replica
    serve.start(
        http_options={"host": s.host, "port": s.port},
        proxy_location="HeadOnly",
        logging_config=quiet,
    )
    serve.run(
        build_app(s, token, head_resource=DB_RESOURCE),
        name=SERVE_APP,
        route_prefix="/",
        blocking=False,
        logging_config=quiet,
    )
    rt.serving = True
    rt.token_file = str(token_file) if token_file else None
    rt.token, rt.token_new = token, not existed


def stop(rt: Runtime, grace: float | None = None) -> bool:
    """Stop dispatching, let running runs finish (up to the grace period; the rest go back to
    `queued`), stop the engines and Serve, close DuckDB cleanly (checkpoint). Stops what was
    started and only that: safe on a Runtime that start-up filled in only partly (a signal
    cut it short), each step bounded, a failing step logged and the rest still done.
    Returns whether DuckDB was closed."""
    if rt.stopped:
        return False
    rt.stopped = True
    ns = rt.settings.namespace
    wait = rt.settings.stop_grace_seconds if grace is None else grace
    _stop_scheduler(rt, wait)
    engines = _engines_to_stop(rt)
    for engine in engines:
        try:
            ray.get(engine.stop.remote(), timeout=10)
        except Exception as exc:
            _warn("engine did not stop cleanly", exc)
    if rt.serving:
        from ray import serve

        try:
            serve.shutdown()  # type: ignore[no-untyped-call]
        except Exception as exc:
            _warn("Serve did not stop cleanly", exc)
    closed = False
    if rt.db is not None:
        try:
            ray.get(rt.db.close.remote(), timeout=60)
            closed = True
        except Exception as exc:
            _warn("the Database did not close cleanly", exc)
    others = [h for name, h in rt.components(engines=False).items() if name != "broker"]
    handles = [*others, *engines]
    handles += [_named(name, ns) for name in (DATABASE, CONFIG, SCHEDULER, LIMITER, POOL)]
    # the broker last: the actors still reading its topics (the ConfigManager's and the
    # pool's commands) would each log its death as a failed consume
    handles += [rt.broker, _named(BROKER, ns)]
    _kill([h for h in handles if h is not None])
    return closed


def _stop_scheduler(rt: Runtime, wait: float) -> None:
    if rt.scheduler is None:
        return
    try:
        outcome = resolve(rt.scheduler.stop.remote(wait), timeout=wait + 30)
        if outcome["requeued"]:
            print(f"{outcome['requeued']} unfinished run(s) left queued for the next start")
    except Exception as exc:
        _warn("scheduler did not stop cleanly", exc)
    if isinstance(rt.scheduler, Hosted):
        rt.scheduler.close()


def _kill(handles: list[Any]) -> None:
    for handle in handles:
        try:
            ray.kill(handle, no_restart=True)
        except Exception as exc:
            _warn("an actor could not be stopped", exc)


def _warn(what: str, exc: BaseException) -> None:
    """One line at WARNING (a stop goes on); the traceback only at DEBUG."""
    log.warning(
        "%s: %s: %s", what, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else ""
    )
    log.debug("%s", what, exc_info=exc)


def _named(name: str, namespace: str) -> Any:
    """The actor of that name, None when there is none (made after a stop looked, or never)."""
    try:
        return ray.get_actor(name, namespace=namespace)
    except Exception:
        return None


def _engines_to_stop(rt: Runtime) -> list[Any]:
    """The pool's engines and any other engine of the namespace (detached: one the pool was
    still adding when start-up was cut short would outlive this session)."""
    found: dict[str, Any] = {}
    if rt.pool is not None:
        try:
            names = ray.get(rt.pool.names.remote(), timeout=10)
            found.update({n: ray.get_actor(n, namespace=rt.settings.namespace) for n in names})
        except Exception as exc:
            _warn("engine pool unavailable: engines found by name", exc)
    try:
        for index in existing_engines(rt.settings.namespace):
            name = engine_name(index)
            if name not in found and (handle := _named(name, rt.settings.namespace)) is not None:
                found[name] = handle
    except Exception as exc:
        _warn("could not list the engines", exc)
    return list(found.values())
