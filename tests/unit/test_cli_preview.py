"""`tg preview FILE` in this process against a real server on 127.0.0.1: the summary, the
JSON answer, exit codes, and a DuckDB file that stays as it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.kit.servers import serve_app
from tg_actors.cli.main import main


async def items(request: Request) -> Response:
    page = int(request.query_params.get("page", 1))
    return JSONResponse({"data": [{"id": i} for i in range((page - 1) * 2, page * 2)]})


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve_app(Starlette(routes=[Route("/items", items)])) as url:
        yield url


def write(tmp_path: Path, base: str, extra: str = "") -> Path:
    path = tmp_path / "trial.yaml"
    path.write_text(
        f"name: trial\nsource:\n  url: {base}/items\n  records: $.data\n"
        f"  paginate: {{type: page}}\n{extra}destination: {{table: trial}}\n"
    )
    return path


def test_preview_prints_pages_stop_and_next_request(
    base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "data.duckdb"
    code = main(["preview", str(write(tmp_path, base)), "--pages", "2", "--db", str(db)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "trial: 2 pages, 4 records" in out and "page_limit" in out
    assert "next request: GET" in out and "page=3" in out
    assert "id  BIGINT" in out
    assert not db.exists()  # nothing written, not even the file


def test_preview_json_answer(base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["preview", str(write(tmp_path, base)), "--pages", "1", "--json"])
    answer = json.loads(capsys.readouterr().out)
    assert code == 0 and answer["pages_read"] == 1 and answer["records"] == 2
    assert answer["sample"]["raw"] == [{"id": 0}, {"id": 1}]


def test_preview_exit_codes(base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, base, "  methd: GET\n")
    assert main(["preview", str(bad)]) == 1
    assert "did you mean" in capsys.readouterr().err
    assert main(["preview", str(tmp_path / "missing.yaml")]) == 3
    assert main(["preview", str(write(tmp_path, base)), "--pages", "21"]) == 2
