"""`tg run`'s runtime (runtime.start(one_off=True)): only the actors one run needs (its
Scheduler hosted in the starting process), and a job's rate limit still holds within the run."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import ray
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.kit.fakeapi import FakeApi
from tests.kit.jobs import write_job
from tests.kit.servers import serve_app
from tg_actors import runtime
from tg_actors.cli.run_once import run_once
from tg_actors.engine.pool import engine_name
from tg_actors.hosted import Hosted
from tg_actors.names import CONFIG, DATABASE, LIMITER, POOL, SCHEDULER
from tg_actors.runstate import RunState
from tg_actors.settings import Settings

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


class Stamped(FakeApi):
    """The fake API, with the time each request arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[float] = []

    def stamped(self) -> ASGIApp:
        inner = self.app()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                self.arrived.append(time.monotonic())
            await inner(scope, receive, send)

        return app


def table_reducer() -> str:
    """What a pyarrow Table pickles to in this process: the function that rebuilds it."""
    from ray import cloudpickle

    rebuild: Any = cloudpickle.CloudPickler.dispatch[pa.Table](pa.table({"a": [1]}))[0]
    return f"{rebuild.__module__}.{rebuild.__qualname__}"


@pytest.fixture
def api() -> Iterator[tuple[Stamped, str]]:
    fake = Stamped()
    fake.add(1, 500)
    with serve_app(fake.stamped()) as url:
        yield fake, url


JOB = """
name: limited
source:
  url: {url}/orders
  params: {{per_page: 100}}
  records: "$.data"
  paginate: {{type: page}}
  rate_limit: {{per_second: 5}}
destination: {{table: limited, write: append}}
"""


def test_a_one_off_run_starts_no_pool_limiter_queue_nor_scheduler_worker_and_keeps_the_limit(
    tmp_path: Path, namespace: str, api: tuple[Stamped, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = api
    write_job(tmp_path / "configs", "limited", JOB.format(url=url))
    write_job(tmp_path / "configs", "broken", "name: broken\nsource: 3\n")
    settings = Settings(
        configs=tmp_path / "configs",
        db_path=tmp_path / "data" / "one_off.duckdb",
        namespace=namespace,
        engines=1,
    )
    rt = runtime.start(settings, schedules=False, serve_app=False, one_off=True)
    try:
        named = {
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == namespace
        }
        # no ConfigManager: the files were stored from this process, the invalid one left out
        stored = [job["name"] for job in ray.get(rt.db.list_jobs.remote())]
        run = run_once(rt, "limited", timeout=120)
        assert len(rt.engines) == 1
        # the Database and the engine made Arrow arrays without pyarrow importing pandas
        loaded = [
            ray.get(actor.__ray_call__.remote(lambda _: "pandas" in sys.modules))
            for actor in (rt.db, *rt.engines)
        ]
        # the engine sends its tables as IPC streams (tg_actors/wire.py)
        sends = ray.get(rt.engines[0].__ray_call__.remote(lambda _: table_reducer()))
        # its one engine read the runs from a plain group: the broker made no queue actor
        queues = ray.get(rt.broker.__ray_call__.remote(lambda broker: len(broker._shared)))
        hosted = rt.scheduler
        assert isinstance(hosted, Hosted) and hosted._thread.is_alive()
    finally:
        runtime.stop(rt)
    assert not hosted._thread.is_alive()  # the stop ended its thread
    assert POOL not in named and LIMITER not in named and CONFIG not in named
    assert SCHEDULER not in named  # no worker process of its own
    assert stored == ["limited"]
    assert "broken.yaml" in capsys.readouterr().out  # its error, by file and field
    assert {engine_name(0), DATABASE} <= named
    assert run is not None and run["state"] == RunState.SUCCEEDED
    assert run["rows_loaded"] == 500
    assert loaded == [False, False]
    assert sends == "tg_actors.wire.from_ipc"
    assert queues == 0
    # 6 requests (5 pages and the empty one) at 5/s: one every 0.2 s at the earliest, no
    # burst. Stamped where they arrive, so a request's own travel (the first one's connect,
    # on a loaded machine) moves a gap by some tens of ms either way: the span says the rate
    assert len(fake.arrived) == 6
    gaps = [b - a for a, b in zip(fake.arrived, fake.arrived[1:], strict=False)]
    assert min(gaps) >= 0.1, gaps
    assert fake.arrived[-1] - fake.arrived[0] >= 5 * 0.2 * 0.9, gaps
