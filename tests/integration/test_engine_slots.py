"""Engines work on several runs at once, and bursts of runs share batched calls (group commit)
end to end: exact rows, one run per trigger, no duplicate (job, scheduled_for)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from tests.kit.jobs import write_job
from tests.kit.ray import poll_until, running_system, wait_for_run
from tests.kit.servers import serve_app, slow_pages_app

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

JOB = """
name: {name}
max_active_runs: 1000
source:
  url: {url}/items
  paginate: {{type: page}}
destination: {{table: {name}, write: append}}
"""


@pytest.fixture(scope="module")
def two_page_server() -> Iterator[str]:
    """2 pages x 50 rows, 0.3 s a page: a run takes ~1 s."""
    with serve_app(slow_pages_app(2, 50, 0.3)) as url:
        yield url


@pytest.fixture(scope="module")
def quick_server() -> Iterator[str]:
    """1 page x 5 rows, at once."""
    with serve_app(slow_pages_app(1, 5, 0.0)) as url:
        yield url


def test_one_engine_works_on_its_slots_at_once(
    tmp_path: Path, namespace: str, two_page_server: str
) -> None:
    write_job(tmp_path / "configs", "overlap", JOB.format(name="overlap", url=two_page_server))
    with running_system(tmp_path, namespace, engines=1, engine_slots=4) as rt:
        assert ray.get(rt.scheduler.status.remote())["slots"] == 4
        ids = [ray.get(rt.scheduler.trigger.remote("overlap")) for _ in range(4)]
        runs = [wait_for_run(rt, run_id, timeout=60) for run_id in ids]
        assert [r["state"] for r in runs] == ["succeeded"] * 4
        # all four were running at the same time on the one engine
        assert max(r["started_at"] for r in runs) < min(r["finished_at"] for r in runs)
        (rows,) = ray.get(rt.db.query.remote("SELECT count(*) FROM main.overlap"))[0]
        assert rows == 4 * 100


def test_a_burst_of_triggers_shares_inserts_and_commits_with_exact_rows(
    tmp_path: Path, namespace: str, quick_server: str
) -> None:
    write_job(tmp_path / "configs", "burst", JOB.format(name="burst", url=quick_server))
    with running_system(tmp_path, namespace, engines=2, engine_slots=16) as rt:
        refs = [rt.scheduler.trigger.remote("burst") for _ in range(200)]
        ids = ray.get(refs)
        assert len(set(ids)) == 200

        def all_ended() -> list[tuple[str, int]] | None:
            rows = ray.get(rt.db.query.remote("SELECT state, count(*) FROM tg.runs GROUP BY 1"))
            return rows if dict(rows).get("succeeded") == 200 else None

        poll_until("200 runs succeeded", all_ended, timeout=120, every=0.2)
        q = "SELECT count(*), count(DISTINCT scheduled_for), count(started_at) FROM tg.runs"
        assert ray.get(rt.db.query.remote(q))[0] == (200, 200, 200)
        (rows,) = ray.get(rt.db.query.remote("SELECT count(*) FROM main.burst"))[0]
        assert rows == 200 * 5
        stats = ray.get(rt.db.stats.remote())
        # the burst went to DuckDB in far fewer transactions than runs
        assert stats["create_runs"]["items"] == 200 and stats["create_runs"]["batches"] < 100
        assert stats["commit"]["items"] == 200 and stats["commit"]["batches"] < 200
