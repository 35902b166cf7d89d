"""tg_actors.client.Client, `tg sql` and `tg export` against the real Serve app over HTTP on
127.0.0.1, every actor running (the Database actor holds the file, as under `tg up`): results
equal the Database's own read, a refused statement raises ApiError with 422 and the API's
detail, the CLI goes through the API while the file is held, and its exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import ray

from tests.kit.cli import free_port, run_tg, tg, tg_env
from tests.kit.ray import DEMO_ROWS, serving_demo
from tg_actors.client import ARROW_STREAM, CSV, ApiError, Client, Unreachable

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_session")]
TOKEN = "client-token-123456789"
ROWS = DEMO_ROWS


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any, Path]]:
    tmp = tmp_path_factory.mktemp("client")
    with serving_demo(tmp, TOKEN) as (url, rt):
        yield url, rt, rt.settings.db_path


@pytest.fixture(scope="module")
def client(served: tuple[str, Any, Path]) -> Iterator[Client]:
    with Client(served[0], TOKEN) as c:
        yield c


def direct(rt: Any, query: str) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = ray.get(rt.db.query.remote(query))
    return rows


def test_sql_is_an_arrow_table_equal_to_the_database_s_read(
    client: Client, served: tuple[str, Any, Path]
) -> None:
    query = "SELECT id, customer, amount FROM demo ORDER BY id"
    table = client.sql(query)
    want = direct(served[1], query)
    assert table.column_names == ["id", "customer", "amount"] and table.num_rows == ROWS
    assert [tuple(r.values()) for r in table.to_pylist()] == want
    some = client.sql("SELECT id FROM demo WHERE id > ? ORDER BY id LIMIT 2", params=[10])
    assert some.column("id").to_pylist() == [11, 12]
    df = client.sql_df("SELECT count(*) AS n FROM demo")
    assert isinstance(df, pl.DataFrame) and df["n"].to_list() == [ROWS]


def test_a_refused_statement_raises_with_the_422_detail(client: Client) -> None:
    for statement, why in (
        ("DELETE FROM demo", "DELETE is not read-only"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
    ):
        with pytest.raises(ApiError) as caught:
            client.sql(statement)
        assert caught.value.status == 422 and why in caught.value.detail
        assert why in str(caught.value)
    assert client.sql("SELECT count(*) AS n FROM demo").column("n").to_pylist() == [ROWS]


def test_sql_to_file_streams_into_the_file(client: Client, tmp_path: Path) -> None:
    size = client.sql_to_file("SELECT range AS i FROM range(300000)", tmp_path / "r.parquet")
    assert size == (tmp_path / "r.parquet").stat().st_size
    assert pq.read_table(tmp_path / "r.parquet").column("i").to_pylist() == list(range(300000))
    with pytest.raises(ApiError) as caught:
        client.sql_to_file("DELETE FROM demo", tmp_path / "d.parquet")
    assert caught.value.status == 422 and "not read-only" in caught.value.detail
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.parquet"]  # no part file left


def test_sql_to_file_writes_csv_and_the_arrow_stream_too(
    client: Client, served: tuple[str, Any, Path], tmp_path: Path
) -> None:
    query = "SELECT id, customer FROM demo ORDER BY id"
    want = direct(served[1], query)
    size = client.sql_to_file(query, tmp_path / "r.csv", accept=CSV)
    assert size == (tmp_path / "r.csv").stat().st_size
    rows = pa_csv.read_csv(tmp_path / "r.csv").to_pylist()
    assert [tuple(r.values()) for r in rows] == want
    size = client.sql_to_file(query, tmp_path / "r.arrows", accept=ARROW_STREAM)
    assert size == (tmp_path / "r.arrows").stat().st_size
    with pa.OSFile(str(tmp_path / "r.arrows")) as f, pa.ipc.open_stream(f) as reader:
        table = reader.read_all()
    assert table.column_names == ["id", "customer"]
    assert [tuple(r.values()) for r in table.to_pylist()] == want
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.arrows", "r.csv"]


def test_a_wrong_token_and_no_api(served: tuple[str, Any, Path]) -> None:
    with Client(served[0], "wrong-token-wrong-token") as bad, pytest.raises(ApiError) as caught:
        bad.jobs()
    assert caught.value.status == 401
    with Client(f"http://127.0.0.1:{free_port()}", TOKEN) as none, pytest.raises(Unreachable):
        none.jobs()


def test_jobs_runs_and_trigger(client: Client) -> None:
    assert [j["name"] for j in client.jobs()] == ["demo"]
    before = client.runs(job="demo")
    assert [r["state"] for r in before] == ["succeeded"]
    run = client.trigger("demo", wait=True, timeout=120, every=0.2)
    assert run["state"] == "succeeded" and run["job"] == "demo"
    assert len(client.runs(job="demo", state="succeeded", limit=10)) == 2
    queued = client.trigger("demo", wait=False)
    assert queued["state"] in ("queued", "running", "succeeded")
    with pytest.raises(ApiError) as caught:
        client.trigger("no_such_job")
    assert caught.value.status == 404


def _tg(served: tuple[str, Any, Path], cwd: Path, *args: str) -> tuple[int, str]:
    url, _rt, db = served
    env = tg_env(int(url.rsplit(":", 1)[1]))
    env["TG_API_TOKEN"] = TOKEN
    return run_tg(tg(*args, "--db", str(db)), env, cwd, 60)


def test_tg_sql_goes_through_the_api_while_the_file_is_held(
    served: tuple[str, Any, Path], tmp_path: Path
) -> None:
    query = "SELECT id, customer FROM demo WHERE id <= 5 ORDER BY id"
    want = direct(served[1], query)
    code, out = _tg(served, tmp_path, "sql", query, "--format", "json")  # the file is held
    assert code == 0, out
    assert [tuple(r.values()) for r in json.loads(out)] == want
    code, out = _tg(served, tmp_path, "sql", query, "--url", served[0], "-f", "json")
    assert code == 0 and [tuple(r.values()) for r in json.loads(out)] == want, out
    code, out = _tg(served, tmp_path, "sql", "SELECT count(*) AS n FROM demo")
    assert code == 0 and str(ROWS) in out, out
    code, out = _tg(served, tmp_path, "sql", query, "-f", "parquet", "-o", "out/q.parquet")
    assert code == 0 and "through the running system's API" in out, out
    rows = pq.read_table(tmp_path / "out" / "q.parquet").to_pylist()
    assert [tuple(r.values()) for r in rows] == want
    code, out = _tg(served, tmp_path, "sql", "DROP TABLE demo")
    assert code == 1 and "422" in out and "not read-only" in out, out
    code, out = _tg(served, tmp_path, "sql", "SELECT 1", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 3 and "is `tg up` running?" in out, out


def test_tg_export_goes_through_the_api_while_the_file_is_held(
    served: tuple[str, Any, Path], tmp_path: Path
) -> None:
    code, out = _tg(served, tmp_path, "export", "demo", "-o", "demo.parquet")
    assert code == 0 and "through the running system's API" in out, out
    table = pq.read_table(tmp_path / "demo.parquet").sort_by("id")
    want = direct(served[1], "SELECT id, customer FROM demo ORDER BY id")
    assert [(r["id"], r["customer"]) for r in table.to_pylist()] == want
    code, out = _tg(served, tmp_path, "export", "demo", "-o", "demo.csv")
    assert code == 0 and (tmp_path / "demo.csv").read_text().count("\n") == ROWS + 1, out
    code, out = _tg(served, tmp_path, "export", "nope", "-o", "nope.parquet")
    assert code == 3 and "nope" in out and not (tmp_path / "nope.parquet").exists(), out


def test_tg_export_through_the_api_makes_the_folder_and_says_a_failed_write(
    served: tuple[str, Any, Path], tmp_path: Path
) -> None:
    code, out = _tg(served, tmp_path, "export", "demo", "-o", "out/sub/demo.parquet")
    assert code == 0 and "through the running system's API" in out, out
    assert pq.read_table(tmp_path / "out" / "sub" / "demo.parquet").num_rows == ROWS
    (tmp_path / "blocker").write_text("a file where the folder would be")
    code, out = _tg(served, tmp_path, "export", "demo", "-o", "blocker/demo.parquet")
    assert code == 1 and "export of demo to blocker/demo.parquet failed" in out, out
    assert "Traceback" not in out, out
    (tmp_path / "taken.csv").mkdir()  # a folder where the file would go: the rename fails
    code, out = _tg(served, tmp_path, "export", "demo", "-o", "taken.csv")
    assert code == 1 and "export of demo to taken.csv failed" in out, out
    assert "Traceback" not in out and list((tmp_path / "taken.csv").iterdir()) == [], out
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]  # none left
