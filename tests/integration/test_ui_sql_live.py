"""The UI's SQL tab on the real system: the Serve app's Gradio UI (every actor running, the
demo source synced), driven by gradio_client with the bearer token. The tab goes through
ApiService.sql / sql_stream, the path of POST /api/sql."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from tests.kit.cli import free_port
from tests.kit.jobs import write_job
from tests.kit.ray import poll_until, serving
from ui import sql as sql_ui

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]
TOKEN = "ui-sql-token-123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROWS = 2500  # the demo source's orders


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from gradio_client import Client

    tmp = tmp_path_factory.mktemp("ui_sql")
    port = free_port()
    write_job(
        tmp / "configs",
        "demo",
        f"""
name: demo
source:
  url: http://127.0.0.1:{port}/demo/orders
  params: {{per_page: 1000}}
  records: "$.data"
  paginate: {{type: page}}
destination: {{table: demo, write: merge, primary_key: [id]}}
""",
    )
    with serving(tmp, TOKEN, port=port, schedules=False) as (url, _rt):
        with httpx.Client(base_url=url, timeout=60) as api:
            poll_until("the API", lambda: _up(api), 120, every=0.5)
            run_id = api.post("/api/jobs/demo/runs", headers=AUTH).json()["run_id"]
            poll_until("the demo run", lambda: _succeeded(api, run_id), 120, every=0.2)
        yield Client(url, verbose=False, headers=AUTH)


def _up(api: httpx.Client) -> bool | None:
    try:
        return True if api.get("/api/health").json()["status"] == "ok" else None
    except (httpx.HTTPError, ValueError):
        return None


def _succeeded(api: httpx.Client, run_id: str) -> bool | None:
    state = api.get(f"/api/runs/{run_id}", headers=AUTH).json()["state"]
    assert state in ("queued", "running", "succeeded"), state
    return True if state == "succeeded" else None


def test_sql_tab_on_the_real_system(ui: Any) -> None:
    result, status = ui.predict("SELECT id FROM demo ORDER BY id", api_name="/sql")
    assert result["headers"] == ["id"] and len(result["data"]) == sql_ui.SHOWN_ROWS
    assert [row[0] for row in result["data"][:3]] == [1, 2, 3]
    assert f"{sql_ui.SHOWN_ROWS} row(s); the first" in status and " ms." in status
    result, status = ui.predict("SELECT count(*) AS n FROM demo", api_name="/sql")
    assert result["data"] == [[ROWS]] and status.startswith("1 row(s).")

    _, status = ui.predict("DELETE FROM demo", api_name="/sql")
    assert status.startswith("Error: query refused:")
    _, status = ui.predict("SELECT no_such_column FROM demo", api_name="/sql")
    assert status.startswith("Error: query failed:") and "no_such_column" in status

    path, status = ui.predict("SELECT * FROM demo ORDER BY id", api_name="/sql_parquet")
    table = pq.read_table(path)
    assert table.num_rows == ROWS and table.column("id").to_pylist()[:2] == [1, 2]
    path, status = ui.predict("SELECT id FROM demo ORDER BY id", api_name="/sql_csv")
    assert pa_csv.read_csv(Path(path)).column("id").to_pylist() == list(range(1, ROWS + 1))

    shown = ui.predict(api_name="/sql_tables")
    assert "**demo**" in shown and "`id`" in shown
