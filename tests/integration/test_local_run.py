"""`tg_actors.run_job`, the Ray-free local run: real HTTP sources on 127.0.0.1, a real DuckDB
file per test. Exact rows (append, merge, incremental), resume of a failed attempt after its
last staged page, a failing `fail` check landing nothing, the job's lookup (file, configs
folder, tg.jobs), DuckDB's lock held by another process, and no Ray imported."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from tests.kit.fakeapi import FakeApi, later
from tests.kit.jobs import write_job
from tests.kit.servers import DEMO_ROWS, serve_app
from tg_actors.errors import JobValidationError
from tg_actors.jobs import parse_job
from tg_actors.localrun import DatabaseInUse, JobNotFound, RunSummary, run_job
from tg_actors.runstate import RunState
from tg_actors.store.duckdb import DuckStore
from tg_actors.store.export import exports_dir

INCREMENTAL = (
    "  incremental: {cursor_field: updated_at, param: updated_since,"
    ' initial: "2024-01-01T00:00:00Z", lookback: 5m}'
)


@pytest.fixture
def fake() -> Iterator[tuple[FakeApi, str]]:
    api = FakeApi()
    with serve_app(api.app()) as url:
        yield api, url


def job_yaml(name: str, url: str, extra: str = "", dest: str = "write: append") -> str:
    # one page per checkpoint, one page at a time, one try per request: a failed page
    # fails the attempt, and the pages before it are staged
    return f"""
name: {name}
retries: {{max_attempts: 2, backoff: 10ms, max_backoff: 20ms}}
source:
  url: {url}/orders
  params: {{per_page: 100}}
  records: "$.data"
  paginate: {{type: page}}
  max_tries: 1
  concurrency: 1
  checkpoint_rows: 100
{extra}
destination: {{table: {name}, {dest}}}
"""


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def run_row(db: Path, run_id: str) -> dict[str, object]:
    with DuckStore(db) as store:
        row = store.get_run(run_id)
    assert row is not None
    return row


def test_a_multi_page_append_job_lands_exactly_the_source_rows(
    tmp_path: Path, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 450, updated=later(1))
    path = write_job(tmp_path / "configs", "orders", job_yaml("orders", url))
    db = tmp_path / "data" / "local.duckdb"
    seen: list[tuple[int, int, float]] = []
    summary = run_job(path, db, on_progress=lambda r, p, s: seen.append((r, p, s)))
    assert isinstance(summary, RunSummary)
    assert summary.ok and summary.state is RunState.SUCCEEDED, summary.error
    assert (summary.rows_loaded, summary.attempts, summary.error) == (450, 1, None)
    assert summary.pages >= 5  # 5 pages of rows (and the empty page that ends them, if asked)
    assert query(db, "SELECT count(*), count(DISTINCT id), sum(id) FROM orders") == [
        (450, 450, sum(range(1, 451)))
    ]
    row = run_row(db, summary.run_id)
    assert (row["state"], row["trigger"], row["rows_loaded"], row["pages"]) == (
        "succeeded",
        "manual",
        450,
        summary.pages,
    )
    assert str(row["engine"]).startswith("local-")
    # progress after each page, the rows growing to the total
    assert [p for _, p, _ in seen] == list(range(1, len(seen) + 1))
    assert seen[-1][0] == 450 and all(s >= 0 for _, _, s in seen)
    with DuckStore(db) as store:
        logs = [entry["message"] for entry in store.get_logs(summary.run_id)]
    assert logs[0] == "state - -> queued (manual)"
    assert any(line.startswith("started on local-") for line in logs)
    assert any(line.startswith("loaded 450 rows from") for line in logs)
    answer = summary.as_dict()
    assert json.loads(json.dumps(answer)) == answer  # JSON-able as it is
    assert answer["state"] == "succeeded" and answer["ok"] is True
    assert isinstance(answer["started_at"], str) and answer["started_at"].endswith("+00:00")


def test_a_merge_job_run_twice_keeps_one_row_per_key(
    tmp_path: Path, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 250, updated=later(1))
    configs = tmp_path / "configs"
    write_job(configs, "merged", job_yaml("merged", url, dest="write: merge, primary_key: [id]"))
    db = tmp_path / "local.duckdb"
    first = run_job("merged", db, configs=configs)  # by name, from <configs>/jobs
    assert first.ok and first.rows_loaded == 250
    api.touch([3, 4], later(5), amount=-1.0)
    api.add(251, 20, updated=later(5))
    second = run_job("merged", db, configs=configs)
    assert second.ok and second.rows_loaded == 270 and second.run_id != first.run_id
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM merged") == [(270, 270)]
    assert query(db, "SELECT amount FROM merged WHERE id IN (3, 4)") == [(-1.0,), (-1.0,)]
    assert query(db, "SELECT count(*) FROM tg.runs WHERE state = 'succeeded'") == [(2,)]


def test_an_incremental_job_asks_only_past_its_cursor_the_second_time(
    tmp_path: Path, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 200, updated=later(1))
    api.add(201, 50, updated=later(10))
    job = job_yaml("inc", url, INCREMENTAL, dest="write: merge, primary_key: [id]")
    path = write_job(tmp_path / "configs", "inc", job)
    db = tmp_path / "local.duckdb"
    first = run_job(path, db)
    assert first.ok and first.rows_loaded == 250
    assert {r["updated_since"] for r in api.requests} == {"2024-01-01T00:00:00Z"}
    assert query(db, "SELECT cursor FROM tg.state WHERE job = 'inc'") == [("2024-01-01T00:10:00Z",)]
    api.requests.clear()
    api.touch([5, 6, 7], later(20), amount=-1.0)
    api.add(251, 10, updated=later(20))
    second = run_job(path, db)
    assert second.ok
    # from the cursor less the 5-minute lookback: the 50 boundary rows again (merged) + 13
    assert {r["updated_since"] for r in api.requests} == {"2024-01-01T00:05:00Z"}
    assert second.rows_loaded == 63
    assert query(db, "SELECT cursor FROM tg.state WHERE job = 'inc'") == [("2024-01-01T00:20:00Z",)]
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM inc") == [(260, 260)]


def test_a_failed_attempt_resumes_after_its_last_staged_page(
    tmp_path: Path, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 500, updated=later(1))
    api.failures[3] = [500]  # page 3 of 5 fails the first time
    path = write_job(tmp_path / "configs", "resumed", job_yaml("resumed", url))
    db = tmp_path / "local.duckdb"
    summary = run_job(path, db)
    assert summary.ok, summary.error
    assert summary.attempts == 2 and summary.rows_loaded == 500
    pages = api.pages_requested()
    assert pages.count(1) == 1 and pages.count(2) == 1  # staged by attempt 1: not fetched again
    assert pages.count(3) == 2 and pages.count(4) == 1 and pages.count(5) == 1
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM resumed") == [(500, 500)]
    row = run_row(db, summary.run_id)
    assert (row["state"], row["attempt"], row["rows_loaded"]) == ("succeeded", 2, 500)
    with DuckStore(db) as store:
        logs = [entry["message"] for entry in store.get_logs(summary.run_id)]
        assert store.staged_run_ids() == []  # the commit dropped the staging
    assert any("running -> retrying" in line and "500" in line for line in logs)
    assert any("retrying -> queued" in line for line in logs)


def test_out_of_attempts_the_run_fails_and_keeps_nothing(
    tmp_path: Path, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 500, updated=later(1))
    api.failures[3] = [500, 500]  # both attempts fail on page 3
    path = write_job(tmp_path / "configs", "broken", job_yaml("broken", url))
    db = tmp_path / "local.duckdb"
    summary = run_job(path, db)
    assert not summary.ok and summary.state is RunState.FAILED and summary.attempts == 2
    assert summary.error is not None and "500" in summary.error
    assert summary.finished_at is not None
    with DuckStore(db) as store:
        assert store.staged_run_ids() == []  # a run failed for good keeps no staging
        assert store.list_tables() == []
    assert api.pages_requested().count(1) == 1  # attempt 2 resumed after page 2 too


def test_a_failing_fail_check_lands_nothing(tmp_path: Path, fake: tuple[FakeApi, str]) -> None:
    api, url = fake
    api.add(1, 150, updated=later(1))
    api.touch([7], later(1), amount=-1.0)
    checks = """checks:
  - {name: no_negative, sql: "SELECT count(*) = 0 FROM records WHERE amount < 0"}"""
    path = write_job(
        tmp_path / "configs", "checked", job_yaml("checked", url, INCREMENTAL + "\n" + checks)
    )
    db = tmp_path / "local.duckdb"
    summary = run_job(path, db)
    assert summary.state is RunState.FAILED and not summary.ok
    assert summary.attempts == 1  # a `fail` check is final: the same rows would fail again
    assert summary.error is not None and "no_negative" in summary.error
    assert summary.rows_loaded == 0
    with DuckStore(db) as store:
        assert store.list_tables() == []  # nothing landed
        assert store.cursor("checked") is None  # nor did the cursor move
        checks_run = store.run_checks(summary.run_id)
    assert [(c["name"], c["passed"]) for c in checks_run] == [("no_negative", False)]


def test_a_job_stored_in_tg_jobs_runs_by_name(tmp_path: Path, fake: tuple[FakeApi, str]) -> None:
    api, url = fake
    api.add(1, 120, updated=later(1))
    db = tmp_path / "local.duckdb"
    spec = parse_job(yaml.safe_load(job_yaml("stored", url)))
    with DuckStore(db) as store:
        store.upsert_job("stored", spec.to_stored(), "api")
    summary = run_job("stored", db, configs=tmp_path / "no-configs")
    assert summary.ok and summary.rows_loaded == 120


def test_a_job_spec_runs_as_given(
    tmp_path: Path, fake: tuple[FakeApi, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, url = fake
    api.add(1, 30, updated=later(1))
    spec = parse_job(yaml.safe_load(job_yaml("given", url)))
    summary = run_job(spec, str(tmp_path / "local.duckdb"))
    assert summary.ok and summary.rows_loaded == 30 and summary.job == "given"
    # without `db`: the settings' database file (TG_DB_PATH here)
    monkeypatch.setenv("TG_DB_PATH", str(tmp_path / "settings.duckdb"))
    assert run_job(spec).ok
    assert query(tmp_path / "settings.duckdb", "SELECT count(*) FROM given") == [(30,)]


def test_an_unknown_job_says_where_it_looked(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    (configs / "jobs").mkdir(parents=True)
    db = tmp_path / "local.duckdb"
    with pytest.raises(JobNotFound) as caught:
        run_job("nope", db, configs=configs)
    assert isinstance(caught.value, LookupError)
    message = str(caught.value)
    assert "'nope'" in message and str(configs / "jobs") in message and "tg.jobs" in message
    with pytest.raises(JobNotFound, match="no such job file"):
        run_job(tmp_path / "missing.yaml", db)


def test_an_invalid_job_file_raises_the_loaders_error(tmp_path: Path) -> None:
    path = write_job(tmp_path / "configs", "bad", "name: bad\nsource: {url: 3}\n")
    with pytest.raises(JobValidationError) as caught:
        run_job(path, tmp_path / "local.duckdb")
    assert "source" in str(caught.value) and str(path) in str(caught.value)


HOLD = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


def test_a_database_held_by_another_process_is_refused_by_name(
    tmp_path: Path, fake: tuple[FakeApi, str]
) -> None:
    _, url = fake
    db = tmp_path / "held.duckdb"
    path = write_job(tmp_path / "configs", "held", job_yaml("held", url))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DatabaseInUse) as caught:
            run_job(path, db)
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(30)
        holder.stdout.close()
    message = str(caught.value)
    assert str(db) in message and "tg trigger JOB" in message
    assert run_job(path, db).ok  # once the other process let go


NO_RAY = """
import sys
from tg_actors import run_job
summary = run_job(sys.argv[1], sys.argv[2])
assert summary.ok, summary.error
assert "ray" not in sys.modules, "ray was imported"
print(summary.rows_loaded)
"""


def test_a_local_run_never_imports_ray(tmp_path: Path, fake: tuple[FakeApi, str]) -> None:
    api, url = fake
    api.add(1, 220, updated=later(1))
    path = write_job(tmp_path / "configs", "noray", job_yaml("noray", url))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NO_RAY), str(path), str(tmp_path / "l.duckdb")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "220"


def shipped(name: str, demo: str) -> str:
    """A shipped job file (configs/jobs) pointed at the test's demo server."""
    text = (Path(__file__).resolve().parents[2] / "configs" / "jobs" / f"{name}.yaml").read_text()
    return text.replace("http://127.0.0.1:8000/demo", demo)


def test_a_for_each_job_reads_one_chain_per_row_of_its_sql(
    tmp_path: Path, demo_server: str
) -> None:
    configs, db = tmp_path / "configs", tmp_path / "local.duckdb"
    for name in ("demo_customers", "demo_customers_orders"):
        write_job(configs, name, shipped(name, demo_server))
    early = run_job("demo_customers_orders", db, configs=configs)  # its parents' table: none yet
    assert early.state is RunState.FAILED and early.error is not None
    assert "reads 'demo_customers'" in early.error and "no data table" in early.error
    parents = run_job("demo_customers", db, configs=configs)
    assert parents.ok and parents.rows_loaded == 250
    children = run_job("demo_customers_orders", db, configs=configs)
    assert children.ok, children.error
    # every demo order belongs to one of the 250 customers: each read once, under its customer
    assert children.rows_loaded == DEMO_ROWS and children.pages >= 250
    assert query(
        db,
        "SELECT count(*), count(DISTINCT id), count(DISTINCT customer_id) FROM demo_customers_orders",
    ) == [(DEMO_ROWS, DEMO_ROWS, 250)]


def test_an_exporting_job_leaves_its_parquet_file(
    tmp_path: Path, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 230, updated=later(1))
    job = job_yaml("shop", url, dest="write: append, export: parquet")
    db = tmp_path / "data" / "local.duckdb"
    summary = run_job(write_job(tmp_path / "configs", "shop", job), db)
    assert summary.ok
    exported = exports_dir(db) / "shop.parquet"
    table = pq.read_table(exported)
    assert table.num_rows == 230 and sorted(table.column("id").to_pylist()) == list(range(1, 231))
    with DuckStore(db) as store:
        logs = [entry["message"] for entry in store.get_logs(summary.run_id)]
    assert f"exported 230 rows of shop to {exported}" in logs


def test_an_interrupted_run_is_cancelled_and_keeps_nothing(
    tmp_path: Path, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 500, updated=later(1))
    path = write_job(tmp_path / "configs", "stopped", job_yaml("stopped", url))
    db = tmp_path / "local.duckdb"

    def ctrl_c(rows: int, pages: int, seconds: float) -> None:
        if pages == 2:  # as a user's Ctrl-C would, mid-run
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run_job(path, db, on_progress=ctrl_c)
    with DuckStore(db) as store:
        (run,) = store.list_runs(job="stopped")
        assert run["state"] == "cancelled"
        assert store.staged_run_ids() == []
        assert store.list_tables() == []
    assert len(api.requests) < 5  # it stopped there


def test_run_job_works_where_an_event_loop_already_runs(
    tmp_path: Path, fake: tuple[FakeApi, str]
) -> None:
    """A notebook's cell runs inside an asyncio loop: run_job runs its own on a thread."""
    api, url = fake
    api.add(1, 40, updated=later(1))
    path = write_job(tmp_path / "configs", "nb", job_yaml("nb", url))

    async def cell() -> RunSummary:
        return run_job(path, tmp_path / "local.duckdb")

    summary = asyncio.run(cell())
    assert summary.ok and summary.rows_loaded == 40
