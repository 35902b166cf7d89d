"""`destination.export: parquet` through the real actors: a job run from a real HTTP source
leaves <data dir>/exports/<table>.parquet with the rows of the table after each commit; a job
without it leaves no file; an export that cannot be written is a warning in the run's logs and
the run still succeeds with its rows committed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
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


def job_yaml(name: str, url: str, export: bool) -> str:
    extra = ", export: parquet" if export else ""
    return f"""
name: {name}
source:
  url: {url}/orders
  params: {{per_page: 100}}
  records: "$.data"
  paginate: {{type: page}}
destination: {{table: {name}, write: merge, primary_key: [id]{extra}}}
"""


def run(rt: Any, job: str) -> dict[str, Any]:
    run_id = ray.get(rt.scheduler.trigger.remote(job))
    done = wait_for_run(rt, run_id)
    assert ray.get(rt.db.wait_exports.remote(60))  # the export after its commit has ended
    return done


def table_rows(rt: Any, table: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = ray.get(
        rt.db.query.remote(f"SELECT id, amount, updated_at FROM {table} ORDER BY id")
    )
    return rows


def file_rows(path: Path) -> list[tuple[Any, ...]]:
    table = pq.read_table(path).sort_by("id")
    return list(
        zip(*(table.column(c).to_pylist() for c in ("id", "amount", "updated_at")), strict=True)
    )


def messages(rt: Any, run_id: str, level: str) -> list[str]:
    return [e["message"] for e in ray.get(rt.db.get_logs.remote(run_id)) if e["level"] == level]


def test_an_exporting_job_leaves_a_parquet_file_of_its_table_after_each_commit(
    tmp_path: Path, namespace: str, fake: tuple[FakeApi, str]
) -> None:
    api, url = fake
    api.add(1, 250)
    configs = tmp_path / "configs"
    write_job(configs, "shop", job_yaml("shop", url, export=True))
    write_job(configs, "plain", job_yaml("plain", url, export=False))
    write_job(configs, "blocked", job_yaml("blocked", url, export=True))
    exports = tmp_path / "data" / "exports"
    (exports / "blocked.parquet" / "inside").mkdir(parents=True)  # the file cannot go there
    target = exports / "shop.parquet"
    with running_system(tmp_path, namespace) as rt:
        first = run(rt, "shop")
        assert first["state"] == "succeeded" and first["rows_loaded"] == 250
        assert file_rows(target) == table_rows(rt, "shop")
        assert len(file_rows(target)) == 250
        assert f"exported 250 rows of shop to {target}" in messages(rt, first["run_id"], "INFO")

        api.touch([5, 6], later(20), amount=-1.0)  # updated
        api.add(251, 10)  # appended
        second = run(rt, "shop")
        assert second["state"] == "succeeded"
        rows = file_rows(target)
        assert rows == table_rows(rt, "shop") and len(rows) == 260
        assert [r[1] for r in rows if r[0] in (5, 6)] == [-1.0, -1.0]

        plain = run(rt, "plain")
        assert plain["state"] == "succeeded" and plain["rows_loaded"] == 260
        assert messages(rt, plain["run_id"], "INFO") and not any(
            "export" in m for m in messages(rt, plain["run_id"], "INFO")
        )

        blocked = run(rt, "blocked")
        assert blocked["state"] == "succeeded" and blocked["rows_loaded"] == 260
        assert len(table_rows(rt, "blocked")) == 260  # the commit stands
        (warning,) = messages(rt, blocked["run_id"], "WARNING")
        assert warning.startswith(f"export of blocked to {exports / 'blocked.parquet'} failed")
    assert sorted(p.name for p in exports.iterdir()) == ["blocked.parquet", "shop.parquet"]
    assert (exports / "blocked.parquet" / "inside").is_dir()
