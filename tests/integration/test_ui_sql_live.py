"""The UI's SQL tab on the real system: the Serve app's Gradio UI (every actor running, the
demo source synced), driven by gradio_client with the bearer token. The tab goes through
ApiService.sql / sql_stream, the path of POST /api/sql."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from tests.kit.ray import DEMO_ROWS, serving_demo
from ui import sql as sql_ui

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]
TOKEN = "ui-sql-token-123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROWS = DEMO_ROWS


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from gradio_client import Client

    tmp = tmp_path_factory.mktemp("ui_sql")
    with serving_demo(tmp, TOKEN) as (url, _rt):
        yield Client(url, verbose=False, headers=AUTH)


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
