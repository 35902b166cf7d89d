"""For the fault tests (process faults, engine scaling, the cluster): a paged source that
counts its requests, its job file, exact-row totals, worker pids, and waits on staged pages
and run logs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray

from tests.kit.fakeapi import FakeApi
from tests.kit.jobs import write_job
from tests.kit.ray import poll_until
from tests.kit.servers import FlakyAPI, flaky_app, serve_app
from tg_actors.runtime import Runtime

# page-paginated; every page is staged with its checkpoint (checkpoint_rows = the page size), so
# a retried attempt resumes after the last staged page. Append: a page staged twice would show.
JOB = """
name: {name}
retries: {{max_attempts: 3, backoff: 100ms, max_backoff: 200ms}}
source:
  url: {url}/items
  params: {{per_page: {per_page}}}
  records: "$.data"
  paginate: {{type: page}}
  checkpoint_rows: {per_page}
destination: {{table: {name}, write: append}}
"""

TOTALS = (
    "SELECT count(*), count(DISTINCT id), sum(id), sum(CAST(round(amount * 100) AS BIGINT))"
    " FROM main.{table}"
)


def add_job(tmp_path: Path, name: str, url: str, per_page: int = 100, extra: str = "") -> None:
    """`extra`: more top-level lines of the job file."""
    text = JOB.format(name=name, url=url, per_page=per_page) + extra
    write_job(tmp_path / "configs", name, text)


@contextmanager
def source(rows: int, per_page: int, delay: float) -> Iterator[tuple[str, FlakyAPI]]:
    """A paged API of `rows` rows (id, amount), `delay` seconds per page; counts its requests."""
    app = flaky_app(rows, per_page, delay=delay)
    with serve_app(app) as url:
        yield url, app.state.api


def expected(api: FlakyAPI | FakeApi) -> tuple[int, int, int, int]:
    rows = list(api.rows.values()) if isinstance(api.rows, dict) else api.rows
    ids = [int(r["id"]) for r in rows]
    cents = sum(round(float(r["amount"]) * 100) for r in rows)
    return len(rows), len(set(ids)), sum(ids), cents


def totals(rt: Runtime, table: str) -> tuple[int, int, int, int]:
    (row,) = ray.get(rt.db.query.remote(TOTALS.format(table=table)), timeout=30)
    return tuple(int(v) for v in row)  # type: ignore[return-value]


def pid_of(actor: Any) -> int | None:
    """The actor's worker process id; None while it is unavailable (dead or restarting)."""
    try:
        return int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=5))
    except Exception:
        return None


def restarted(actor: Any, old_pid: int, timeout: float = 60.0) -> int:
    """Wait until Ray has restarted the actor in a new process; its pid."""

    def new_pid() -> int | None:
        pid = pid_of(actor)
        return pid if pid is not None and pid != old_pid else None

    return poll_until("actor restarted in a new process", new_pid, timeout, every=0.2)


def staged_pages(rt: Runtime, run_id: str, pages: int, timeout: float = 30.0) -> int:
    """Wait until the run has staged at least `pages` pages (its checkpoint says so)."""

    def far_enough() -> int | None:
        saved = ray.get(rt.db.checkpoint.remote(run_id))
        return saved["pages"] if saved and saved["pages"] >= pages else None

    return poll_until(f"run {run_id} to stage {pages} pages", far_enough, timeout)


def retries_logged(rt: Runtime, run_id: str) -> int:
    """How many times the run went `retrying`, from its log (written from the `status` topic,
    so waited for until its final `succeeded` line is there)."""

    def complete() -> list[str] | None:
        lines = [entry["message"] for entry in ray.get(rt.db.get_logs.remote(run_id))]
        return lines if any("-> succeeded" in line for line in lines) else None

    lines = poll_until(f"run {run_id}'s log to end", complete, 15, every=0.1)
    return sum("-> retrying" in line for line in lines)


def assert_consistent(rt: Runtime, runs_per_job: dict[str, int]) -> None:
    """One run per trigger, every one ended `succeeded`, nothing staged or checkpointed."""
    counts = ray.get(rt.db.query.remote("SELECT job, state, count(*) FROM tg.runs GROUP BY ALL"))
    assert {(job, state): n for job, state, n in counts} == {
        (job, "succeeded"): n for job, n in runs_per_job.items()
    }
    assert ray.get(rt.db.staged_run_ids.remote()) == []
    assert ray.get(rt.db.query.remote("SELECT count(*) FROM tg.run_checkpoints")) == [(0,)]
