"""Source features through the real actors: incremental cursors, resume after a failed
attempt, atomicity, the shared rate limit, schema changes, transform errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from tests.kit.fakeapi import FakeApi, later
from tests.kit.jobs import write_job
from tests.kit.ray import running_system, wait_for_run
from tests.kit.servers import serve_app

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]


@pytest.fixture
def fake() -> Iterator[tuple[FakeApi, str]]:
    api = FakeApi()
    with serve_app(api.app()) as url:
        yield api, url


def job_yaml(
    name: str, url: str, extra: str = "", dest: str = "write: merge, primary_key: [id]"
) -> str:
    return f"""
name: {name}
retries: {{max_attempts: 2, backoff: 100ms, max_backoff: 200ms}}
source:
  url: {url}/orders
  params: {{per_page: 100}}
  records: "$.data"
  paginate: {{type: page}}
  max_tries: 2
  backoff: 10ms
{extra}
destination: {{table: {name}, {dest}}}
"""


def run(rt: object, job: str) -> dict[str, object]:
    return wait_for_run(rt, ray.get(rt.scheduler.trigger.remote(job)))  # type: ignore[attr-defined,arg-type]


def query(rt: object, sql: str) -> list[tuple[object, ...]]:
    return ray.get(rt.db.query.remote(sql))  # type: ignore[attr-defined,no-any-return]


INCREMENTAL = """  incremental: {cursor_field: updated_at, param: updated_since, initial: "2024-01-01T00:00:00Z", lookback: 5m}"""


def test_incremental_picks_up_appended_and_updated_rows_without_duplicates(
    tmp_path: Path, namespace: str, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 200, updated=later(1))
    api.add(201, 50, updated=later(10))  # the newest rows sit on the cursor boundary
    write_job(tmp_path / "configs", "inc", job_yaml("inc", url, INCREMENTAL))
    with running_system(tmp_path, namespace) as rt:
        first = run(rt, "inc")
        assert first["state"] == "succeeded" and first["rows_loaded"] == 250
        assert ray.get(rt.db.cursor.remote("inc")) == "2024-01-01T00:10:00Z"
        assert {r["updated_since"] for r in api.requests} == {"2024-01-01T00:00:00Z"}
        api.requests.clear()
        api.touch([5, 6, 7], later(20), amount=-1.0)  # updated
        api.add(251, 10, updated=later(20))  # appended
        second = run(rt, "inc")
        assert second["state"] == "succeeded"
        # asked from the cursor minus the 5-minute lookback: the 50 boundary rows again
        # (merged, not duplicated) plus the 13 changed ones
        assert {r["updated_since"] for r in api.requests} == {"2024-01-01T00:05:00Z"}
        assert second["rows_loaded"] == 63
        assert ray.get(rt.db.cursor.remote("inc")) == "2024-01-01T00:20:00Z"
        rows = query(rt, "SELECT count(*), count(DISTINCT id), sum(amount) FROM inc")
    expected = sum(range(1, 261)) - (5 + 6 + 7) - 3
    assert rows == [(260, 260, float(expected))]


def test_failed_attempt_is_retried_from_its_last_staged_page(
    tmp_path: Path, namespace: str, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 1000)
    api.failures[6] = [400]  # page 6 fails once, at once (a 400 is not retried per request)
    # a checkpoint after every page (100 rows), so the resume point is exact
    write_job(
        tmp_path / "configs",
        "resumable",
        job_yaml("resumable", url, "  checkpoint_rows: 100"),
    )
    with running_system(tmp_path, namespace) as rt:
        done = run(rt, "resumable")
        assert done["state"] == "succeeded", done["error"]
        assert done["attempt"] == 2 and done["rows_loaded"] == 1000
        logs = [e["message"] for e in ray.get(rt.db.get_logs.remote(done["run_id"]))]
    # pages 1-5 were fetched once: the second attempt went on from page 6
    assert api.pages_requested() == [1, 2, 3, 4, 5, 6, 6, 7, 8, 9, 10, 11]
    assert any("400" in m for m in logs)
    assert any("retrying" in m for m in logs)


def test_failed_run_changes_neither_table_nor_cursor(
    tmp_path: Path, namespace: str, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 300, updated=later(1))
    write_job(tmp_path / "configs", "atomic", job_yaml("atomic", url, INCREMENTAL))
    with running_system(tmp_path, namespace) as rt:
        assert run(rt, "atomic")["state"] == "succeeded"
        api.touch(list(range(1, 301)), later(30), amount=0.0)
        api.failures[3] = [404, 404]  # both attempts die on page 3, after pages 1-2 staged
        failed = run(rt, "atomic")
        assert failed["state"] == "failed" and "404" in str(failed["error"])
        assert ray.get(rt.db.cursor.remote("atomic")) == "2024-01-01T00:01:00Z"
        rows = query(rt, "SELECT count(*), sum(amount) FROM atomic")
    assert rows == [(300, float(sum(range(1, 301))))]


def test_rate_limit_is_shared_by_engines_running_the_same_job(
    tmp_path: Path, namespace: str, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 1400)
    limited = job_yaml("limited", url, "  rate_limit: {per_second: 10}", "write: append").replace(
        "retries:", "max_active_runs: 2\nretries:"
    )
    write_job(tmp_path / "configs", "limited", limited)
    with running_system(tmp_path, namespace, engines=2) as rt:
        ids = [ray.get(rt.scheduler.trigger.remote("limited")) for _ in range(2)]
        began = time.monotonic()
        runs = [wait_for_run(rt, run_id) for run_id in ids]
        elapsed = time.monotonic() - began
    assert [r["state"] for r in runs] == ["succeeded", "succeeded"]
    assert len(api.requests) == 30  # 2 runs x (14 pages + the empty one)
    # 30 requests at 10/s across both engines take at least ~2.9 s
    assert elapsed >= 2.5


def test_incompatible_type_change_fails_naming_the_column_and_types(
    tmp_path: Path, namespace: str, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 50)
    write_job(tmp_path / "configs", "typed", job_yaml("typed", url))
    write_job(
        tmp_path / "configs",
        "typed_wide",
        job_yaml("typed_wide", url, dest="write: merge, primary_key: [id], widen_to_varchar: true"),
    )
    with running_system(tmp_path, namespace) as rt:
        assert run(rt, "typed")["state"] == "succeeded"
        assert run(rt, "typed_wide")["state"] == "succeeded"
        api.touch([1, 2], later(5), amount="n/a")  # amount: DOUBLE -> text on two rows
        bad = run(rt, "typed")
        assert bad["state"] == "failed"
        assert "amount" in str(bad["error"]) and "DOUBLE" in str(bad["error"])
        assert "VARCHAR" in str(bad["error"])
        assert run(rt, "typed_wide")["state"] == "succeeded"
        rows = query(rt, "SELECT typeof(amount), count(*) FROM typed_wide GROUP BY 1")
    assert rows == [("VARCHAR", 50)]


def test_failing_transform_names_the_job_and_the_sql(
    tmp_path: Path, namespace: str, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 10)
    text = job_yaml("bad_sql", url).replace(
        "destination:", 'transform: {sql: "SELECT nope FROM records"}\ndestination:'
    )
    write_job(tmp_path / "configs", "bad_sql", text)
    with running_system(tmp_path, namespace, engines=1) as rt:
        failed = run(rt, "bad_sql")
    assert failed["state"] == "failed"
    assert "job bad_sql: transform failed" in str(failed["error"])
    assert "SELECT nope FROM records" in str(failed["error"])


def test_a_failing_check_fails_the_run_once_and_lands_nothing(
    tmp_path: Path, namespace: str, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 150, updated=later(1))
    checks = """checks:
  - {name: no_negative, sql: "SELECT count(*) = 0 FROM records WHERE amount < 0"}
  - {type: row_count, min: 1000, on_fail: warn}"""
    write_job(
        tmp_path / "configs", "checked", job_yaml("checked", url, INCREMENTAL + "\n" + checks)
    )
    with running_system(tmp_path, namespace) as rt:
        first = run(rt, "checked")
        assert first["state"] == "succeeded" and first["rows_loaded"] == 150  # warn: lands
        outcome = ray.get(rt.db.run_checks.remote(first["run_id"]))
        assert [(c["name"], c["passed"]) for c in outcome] == [
            ("no_negative", True),
            ("row_count_records", False),
        ]
        api.touch([5, 6], later(30), amount=-1.0)
        api.add(151, 10, updated=later(30))
        failed = run(rt, "checked")
        # a failing `fail` check is not retried (max_attempts is 2): the same rows would fail
        assert failed["state"] == "failed" and failed["attempt"] == 1
        assert "no_negative" in str(failed["error"]) and "nothing committed" in str(failed["error"])
        assert ray.get(rt.db.cursor.remote("checked")) == "2024-01-01T00:01:00Z"
        rows = query(rt, "SELECT count(*), min(amount) FROM checked")
        outcome = ray.get(rt.db.run_checks.remote(failed["run_id"]))
    assert rows == [(150, 1.0)]
    assert outcome[0]["name"] == "no_negative" and outcome[0]["passed"] is False
