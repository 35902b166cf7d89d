"""/metrics through the whole system, read with prometheus_client's parser: after runs that
succeed and fail, per-job run counts, rows, durations and the sources' response codes; after
a restart, the run counters seeded from tg.runs; every tg_* name the Grafana dashboard
(deploy/grafana/turbo-giggle.json) queries is exposed."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serve.service import ApiService
from tests.kit.jobs import write_job
from tests.kit.ray import poll_until, running_system, wait_for_run
from tests.kit.servers import serve_app

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]
DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "turbo-giggle.json"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def items(request: Request) -> JSONResponse:
    return JSONResponse({"data": [{"id": 1}, {"id": 2}, {"id": 3}]})


async def gone(request: Request) -> JSONResponse:
    return JSONResponse({"detail": "no such thing"}, status_code=404)


# a stale_after and a warn check that does not pass: tg_job_stale and tg_checks_failed_total
GOOD = """name: good
alerts: {{stale_after: 1h}}
source: {{url: '{base}/items', records: '$.data'}}
destination: {{table: good}}
checks:
  - {{name: at_least_1000, sql: "SELECT count(*) >= 1000 FROM records", on_fail: warn}}
"""
# a 404 is not retried by the client; one attempt: the run fails for good
BAD = """name: bad
retries: {{max_attempts: 1}}
source: {{url: '{base}/gone', records: '$.data'}}
destination: {{table: bad}}
"""


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def settled(api: ApiService, finished: int) -> Samples | None:
    """The scrape once the Scheduler has counted `finished` ended runs and none is active (a
    run ends in DuckDB a moment before the Scheduler hears of it)."""
    samples = parse(asyncio.run(api.metrics()))
    ended = sum(v for (name, _), v in samples.items() if name == "tg_runs_finished_total")
    active = sum(v for (name, _), v in samples.items() if name == "tg_runs_active")
    return samples if ended == finished and active == 0 else None


@pytest.fixture(scope="module")
def scrapes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Samples, Samples]]:
    """(after 2 good runs and 1 bad one, after a restart of the whole system)."""
    tmp = tmp_path_factory.mktemp("metrics")
    app = Starlette(routes=[Route("/items", items), Route("/gone", gone)])
    with serve_app(app) as base:
        write_job(tmp / "configs", "good", GOOD.format(base=base))
        write_job(tmp / "configs", "bad", BAD.format(base=base))
        for attempt in ("first", "restarted"):
            namespace = f"tg_metrics_{attempt}"
            with running_system(tmp, namespace, engines=1, schedules=False) as rt:
                api = ApiService(namespace)
                if attempt == "first":
                    for job in ("good", "good", "bad"):
                        run_id = ray.get(rt.scheduler.trigger.remote(job))
                        wait_for_run(rt, run_id, 60)
                    first = poll_until("3 runs counted", functools.partial(settled, api, 3), 60)
                else:
                    again = poll_until("3 runs seeded", functools.partial(settled, api, 3), 60)
    yield first, again


def test_runs_rows_durations_and_codes_are_counted_per_job(
    scrapes: tuple[Samples, Samples],
) -> None:
    first, _ = scrapes
    assert get(first, "tg_runs_finished_total", state="succeeded", tg_job="good") == 2
    assert get(first, "tg_runs_finished_total", state="failed", tg_job="bad") == 1
    assert get(first, "tg_runs_finished_total", state="succeeded", tg_job="bad") is None
    assert get(first, "tg_rows_loaded_total", tg_job="good") == 6
    assert get(first, "tg_run_duration_seconds_count", tg_job="good") == 2
    assert get(first, "tg_run_duration_seconds_bucket", tg_job="good", le="+Inf") == 2
    assert get(first, "tg_source_requests_total", tg_job="good", code="200") == 2
    assert get(first, "tg_source_requests_total", tg_job="bad", code="404") == 1
    assert get(first, "tg_runs", state="succeeded") == 2  # deprecated, still there
    assert get(first, "tg_runs", state="failed") == 1
    assert get(first, "tg_runs_active", state="queued") == 0
    assert get(first, "tg_engines") == 1 and get(first, "tg_jobs") == 2
    assert get(first, "tg_trigger_lateness_seconds_count") == 3
    assert (get(first, "tg_job_last_success_timestamp_seconds", tg_job="good") or 0) > 0
    assert get(first, "tg_job_stale", tg_job="good") == 0
    assert get(first, "tg_checks_failed_total", tg_job="good") == 2  # once per good run
    (version,) = [dict(labels)["version"] for name, labels in first if name == "tg_build_info"]
    assert version
    assert not [labels for _, labels in first if "job" in dict(labels)]  # `tg_job`, never `job`


def test_a_restarted_system_seeds_the_run_counters_from_duckdb(
    scrapes: tuple[Samples, Samples],
) -> None:
    _, again = scrapes
    assert get(again, "tg_runs_finished_total", state="succeeded", tg_job="good") == 2
    assert get(again, "tg_runs_finished_total", state="failed", tg_job="bad") == 1
    assert get(again, "tg_rows_loaded_total", tg_job="good") == 6
    assert get(again, "tg_run_duration_seconds_count", tg_job="good") == 2
    # responses are counted from the Scheduler's start: tg.runs keeps no per-code figures
    assert not [name for name, _ in again if name == "tg_source_requests_total"]


def dashboard_names() -> set[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return {name for expr in exprs for name in re.findall(r"\btg_[a-z_]+\b", expr)} - {"tg_job"}


def test_every_metric_the_dashboard_queries_is_exposed(
    scrapes: tuple[Samples, Samples],
) -> None:
    first, _ = scrapes
    names = dashboard_names()
    assert {"tg_runs_active", "tg_run_duration_seconds_bucket", "tg_queue_depth"} <= names
    exposed = {name for name, _ in first}
    assert names - exposed == set()
