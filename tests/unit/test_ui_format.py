"""ui.format: API answers -> table rows, plot frames and status lines (no Gradio)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
import yaml

from tg_actors.errors import (
    IllegalTransition,
    JobNotFound,
    JobValidationError,
    NoCapacity,
    RunNotFound,
    TableNotFound,
)
from ui import engine_format as efmt
from ui import format as fmt

RUN: dict[str, Any] = {
    "run_id": "a" * 32, "job": "orders", "state": "succeeded", "trigger": "manual", "attempt": 2,
    "scheduled_for": "2024-05-01T10:00:00+00:00", "queued_at": "2024-05-01T10:00:00+00:00",
    "started_at": "2024-05-01T10:00:01+00:00", "finished_at": "2024-05-01T10:00:03.5+00:00",
    "rows_loaded": 250, "pages": 3, "error": None,
}  # fmt: skip


@pytest.mark.parametrize(
    ("iso", "expected"),
    [
        (None, ""),
        ("", ""),
        ("2024-05-01T10:00:00+00:00", "2024-05-01 10:00:00Z"),
        ("2024-05-01T10:00:00.123456Z", "2024-05-01 10:00:00Z"),
        ("2024-05-01T12:00:00+02:00", "2024-05-01 10:00:00Z"),
        ("2024-05-01T10:00:00", "2024-05-01 10:00:00Z"),
        ("not a time", "not a time"),
    ],
)
def test_when(iso: str | None, expected: str) -> None:
    assert fmt.when(iso) == expected


@pytest.mark.parametrize(
    ("started", "finished", "expected"),
    [
        (None, "2024-05-01T10:00:00Z", ""),
        ("2024-05-01T10:00:00Z", None, ""),
        ("2024-05-01T10:00:00Z", "2024-05-01T10:00:02.25Z", "2.2s"),
        ("2024-05-01T10:00:00Z", "2024-05-01T10:04:05Z", "4m 05s"),
        ("2024-05-01T10:00:00Z", "2024-05-01T11:02:30Z", "1h 02m"),
        ("garbage", "2024-05-01T10:00:00Z", ""),
    ],
)
def test_duration(started: str | None, finished: str | None, expected: str) -> None:
    assert fmt.duration(started, finished) == expected


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (None, "manual"),
        ({}, "manual"),
        ({"cron": "*/15 * * * *", "timezone": "UTC"}, "cron */15 * * * *"),
        ({"cron": "0 6 * * *", "timezone": "Europe/Berlin"}, "cron 0 6 * * * (Europe/Berlin)"),
        ({"interval": "30s", "cron": None}, "interval 30s"),
        ({"at": "2026-12-01T00:00:00Z"}, "at 2026-12-01T00:00:00Z"),
        ({"timezone": "UTC"}, "?"),
    ],
)
def test_schedule_text(schedule: dict[str, Any] | None, expected: str) -> None:
    assert fmt.schedule_text(schedule) == expected


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        (
            {"name": "orders", "enabled": True, "paused": False, "schedule": {"interval": "30s"},
             "next_run_at": "2024-05-01T10:00:30+00:00", "last_run": RUN},
            ["orders", True, False, "interval 30s", "2024-05-01 10:00:30Z", "succeeded",
             "2024-05-01 10:00:03Z", 250],
        ),
        (
            {"name": "new", "enabled": False, "paused": True, "schedule": None,
             "next_run_at": None, "last_run": None},
            ["new", False, True, "manual", "", "", "", ""],
        ),
    ],
)  # fmt: skip
def test_job_rows(job: dict[str, Any], expected: list[Any]) -> None:
    (row,) = fmt.job_rows([job])
    assert row == expected and len(row) == len(fmt.JOB_COLUMNS)
    assert row[fmt.JOB_COLUMNS.index("last state")] == expected[5]  # the refresh test reads [5]


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        (
            RUN,
            ["a" * 32, "orders", "succeeded", "manual", 2, "2024-05-01 10:00:00Z",
             "2024-05-01 10:00:01Z", "2024-05-01 10:00:03Z", "2.5s", 250, 3, ""],
        ),
        (
            RUN | {"state": "queued", "started_at": None, "finished_at": None, "rows_loaded": None,
                   "pages": None, "error": "x" * 500},
            ["a" * 32, "orders", "queued", "manual", 2, "2024-05-01 10:00:00Z", "", "", "", 0, 0,
             "x" * 200],
        ),
    ],
)  # fmt: skip
def test_run_rows(run: dict[str, Any], expected: list[Any]) -> None:
    assert fmt.run_rows([run]) == [expected]
    assert len(expected) == len(fmt.RUN_COLUMNS)
    assert fmt.RUN_COLUMNS[1:3] == ["job", "state"]  # the refresh test reads [1] and [2]


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        (None, []),
        ({}, []),
        (
            RUN | {"extra": 1},
            [["run_id", "a" * 32], ["job", "orders"], ["state", "succeeded"],
             ["trigger", "manual"], ["attempt", "2"], ["scheduled_for", RUN["scheduled_for"]],
             ["queued_at", RUN["queued_at"]], ["started_at", RUN["started_at"]],
             ["finished_at", RUN["finished_at"]], ["rows_loaded", "250"], ["pages", "3"],
             ["error", ""], ["extra", "1"]],
        ),
    ],
)  # fmt: skip
def test_run_detail_rows(run: dict[str, Any] | None, expected: list[list[str]]) -> None:
    assert fmt.run_detail_rows(run) == expected


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (None, ("", "")),
        ([], ("", "")),
        ([["run_id", "r1"], ["state", "running"]], ("r1", "running")),
        (fmt.run_detail_rows(RUN), ("a" * 32, "succeeded")),
        ([["", ""]], ("", "")),
    ],
)
def test_shown_run(rows: list[list[Any]] | None, expected: tuple[str, str]) -> None:
    assert fmt.shown_run(rows) == expected


@pytest.mark.parametrize(
    ("logs", "expected"),
    [
        (None, []),
        ([], []),
        (
            [{"ts": "2024-05-01T10:00:01+00:00", "level": "INFO", "message": "page 1: 100 rows"},
             {"ts": None, "level": None, "message": "no time"}],
            [["2024-05-01 10:00:01Z", "INFO", "page 1: 100 rows"], ["", "", "no time"]],
        ),
    ],
)  # fmt: skip
def test_log_rows(logs: list[dict[str, Any]] | None, expected: list[list[Any]]) -> None:
    assert fmt.log_rows(logs) == expected


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        ([], []),
        ([("schedule.interval", "bad duration")], [["schedule.interval", "bad duration"]]),
        ([("", "not a mapping"), ("source.methd", "unknown field")],
         [["(job)", "not a mapping"], ["source.methd", "unknown field"]]),
    ],
)  # fmt: skip
def test_error_rows(errors: list[tuple[str, str]], expected: list[list[str]]) -> None:
    assert fmt.error_rows(errors) == expected


def test_error_rows_from_a_validation_error() -> None:
    exc = JobValidationError("job", [("destination", "primary_key is required for merge")])
    assert fmt.error_rows(exc.errors) == [["destination", "primary_key is required for merge"]]


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        ([], []),
        ([{"name": "orders", "rows": 3, "columns": [{"name": "id", "type": "BIGINT"}]},
          {"name": "empty", "rows": None, "columns": []}],
         [["orders", 3, 1], ["empty", "", 0]]),
    ],
)  # fmt: skip
def test_table_rows(tables: list[dict[str, Any]], expected: list[list[Any]]) -> None:
    assert fmt.table_rows(tables) == expected


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (None, []),
        ({"name": "t", "rows": 0, "columns": []}, []),
        ({"name": "t", "rows": 1, "columns": [{"name": "id", "type": "BIGINT"},
                                              {"name": "at", "type": "TIMESTAMP"}]},
         [["id", "BIGINT"], ["at", "TIMESTAMP"]]),
    ],
)  # fmt: skip
def test_column_rows(table: dict[str, Any] | None, expected: list[list[str]]) -> None:
    assert fmt.column_rows(table) == expected


@pytest.mark.parametrize(
    ("answer", "columns", "rows"),
    [
        (None, [], []),
        ({"columns": [{"name": "id", "type": "BIGINT"}, {"name": "name", "type": "VARCHAR"}],
          "rows": []}, ["id", "name"], []),
        ({"columns": [{"name": "id", "type": "BIGINT"}, {"name": "name", "type": "VARCHAR"}],
          "rows": [[1, "a"], [2, None]]}, ["id", "name"], [[1, "a"], [2, None]]),
    ],
)  # fmt: skip
def test_result_frame(answer: dict[str, Any] | None, columns: list[str], rows: list[Any]) -> None:
    frame = fmt.result_frame(answer)
    assert list(frame.columns) == columns
    assert frame.astype(object).where(frame.notna(), None).values.tolist() == rows


@pytest.mark.parametrize(
    ("name", "quoted"),
    [("orders", '"orders"'), ('we"ird', '"we""ird"'), ("two words", '"two words"')],
)
def test_sql_name_quotes_any_table_name(name: str, quoted: str) -> None:
    assert fmt.sql_name(name) == quoted


@pytest.mark.parametrize(
    ("by_state", "expected"),
    [
        (None, dict.fromkeys(fmt.RUN_STATES, 0)),
        ({"succeeded": 4, "failed": 1}, dict.fromkeys(fmt.RUN_STATES, 0) | {"succeeded": 4, "failed": 1}),
        ({"weird": 2}, dict.fromkeys(fmt.RUN_STATES, 0) | {"weird": 2}),
    ],
)  # fmt: skip
def test_state_frame(by_state: dict[str, int] | None, expected: dict[str, int]) -> None:
    frame = fmt.state_frame(by_state)
    assert list(frame.columns) == fmt.STATE_FRAME_COLUMNS
    assert dict(zip(frame["state"], frame["runs"], strict=True)) == expected
    assert list(frame["state"]) == list(expected)  # lifecycle order, unknown states last
    assert pd.api.types.is_integer_dtype(frame["runs"])


@pytest.mark.parametrize(
    ("loaded", "expected"),
    [
        (None, []),
        ([], []),
        (
            [{"finished_at": "2024-05-01T10:05:00+00:00", "job": "b", "rows": 5},
             {"finished_at": "2024-05-01T10:00:00.5Z", "job": "a", "rows": None},
             {"finished_at": None, "job": "c", "rows": 9}],
            [(pd.Timestamp("2024-05-01T10:00:00.5Z"), "a", 0),
             (pd.Timestamp("2024-05-01T10:05:00Z"), "b", 5)],
        ),
    ],
)  # fmt: skip
def test_loaded_frame(loaded: list[dict[str, Any]] | None, expected: list[tuple[Any, ...]]) -> None:
    frame = fmt.loaded_frame(loaded)
    assert list(frame.columns) == fmt.LOADED_FRAME_COLUMNS
    assert list(frame.itertuples(index=False, name=None)) == expected
    # the plot needs a datetime x axis, a text colour and a number y, even when empty
    assert pd.api.types.is_datetime64_any_dtype(frame["finished_at"])
    assert pd.api.types.is_string_dtype(frame["job"])
    assert pd.api.types.is_integer_dtype(frame["rows"])


@pytest.mark.parametrize(
    ("columns", "data", "expected"),
    [
        (None, None, []),
        (["finished_at", "rows"], [[1, 2]], []),
        (["finished_at", "job", "rows"], [], []),
        (["finished_at", "job", "rows"], [[1, "b", 2], [2, "a", 3], [3, "b", 1]], ["a", "b"]),
        (["finished_at", "job", "rows"], [[1, 7, 2], [2]], ["7"]),
    ],
)
def test_plot_series(
    columns: list[str] | None, data: list[list[Any]] | None, expected: list[str]
) -> None:
    assert fmt.plot_series(columns, data, "job") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: orders\nsource: {}\n", "orders"),
        ("name: '  spaced  '\n", "spaced"),
        ("name: ''\n", None),
        ("name: 42\n", None),
        ("- a list\n", None),
        ("", None),
        ("name: [unclosed\n", None),
        (fmt.JOB_TEMPLATE, "my_job"),
    ],
)
def test_job_name_from_yaml(text: str, expected: str | None) -> None:
    assert fmt.job_name_from_yaml(text) == expected


def test_template_is_yaml_with_the_required_parts_and_no_secret_value() -> None:
    data = yaml.safe_load(fmt.JOB_TEMPLATE)
    assert {"name", "source", "destination"} <= set(data)
    assert data["source"]["url"].startswith("https://")
    assert "${API_TOKEN}" in fmt.JOB_TEMPLATE and "auth" not in data["source"]  # a comment only


def test_template_is_a_valid_job() -> None:
    from tg_actors.jobs import parse_job

    assert parse_job(yaml.safe_load(fmt.JOB_TEMPLATE)).name == "my_job"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (IllegalTransition("r1", "succeeded", "cancelled"),
         "Run r1 already ended (succeeded): nothing to cancel."),
        (JobValidationError("job", [("a", "x"), ("b", "y")]), "Invalid job: 2 error(s), see the table."),
        (JobNotFound("ghost"), "Error: No job named 'ghost'"),
        (RunNotFound("nope"), "Error: No run with id 'nope'"),
        (TableNotFound("t"), "Error: No table named 't'"),
        (NoCapacity("could not start 2 more engine(s): add nodes or ask for fewer"),
         "Not enough room in the cluster: could not start 2 more engine(s): add nodes or ask"
         " for fewer. The engines are as they were."),
        (ValueError("engine count must be between 1 and 256, not 0"),
         "Error (ValueError): engine count must be between 1 and 256, not 0"),
        (RuntimeError("boom"), "Error (RuntimeError): boom"),
    ],
)  # fmt: skip
def test_describe_error(exc: BaseException, expected: str) -> None:
    assert fmt.describe_error(exc) == expected


@pytest.mark.parametrize(
    ("names", "first", "expected"),
    [
        ([], (), []),
        (["b", "a", "b"], (), ["a", "b"]),
        (["b", "a"], (fmt.NEW_JOB,), [fmt.NEW_JOB, "a", "b"]),
        (["x"], [fmt.ALL], [fmt.ALL, "x"]),
    ],
)
def test_choices(names: list[str], first: Any, expected: list[str]) -> None:
    assert fmt.choices(names, first) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), (fmt.ALL, None), ("orders", "orders"), ("failed", "failed")],
)
def test_optional(value: str | None, expected: str | None) -> None:
    assert fmt.optional(value) == expected


NODE_A = "a1b2c3d4" + "0" * 48
ENGINE: dict[str, Any] = {
    "name": "tg_engine_0", "engine": "engine-0", "state": "up", "node_id": NODE_A,
    "node_ip": "10.0.0.1", "pid": 4242, "slots": 8, "runs_done": 17, "current_runs": ["r1", "r2"],
}  # fmt: skip


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        (ENGINE, ["tg_engine_0", "up", "10.0.0.1", "a1b2c3d4", 4242, 8, 2, 17, "r1, r2"]),
        (ENGINE | {"state": "draining", "current_runs": []},
         ["tg_engine_0", "draining", "10.0.0.1", "a1b2c3d4", 4242, 8, 0, 17, ""]),
        ({"name": "tg_engine_3", "state": "unavailable", "error": "GetTimeoutError"},
         ["tg_engine_3", "unavailable (GetTimeoutError)", "", "", "", "", "", "", ""]),
        ({"engine": "engine-5"}, ["engine-5", "?", "", "", "", "", 0, "", ""]),
    ],
)  # fmt: skip
def test_engine_rows(engine: dict[str, Any], expected: list[Any]) -> None:
    assert efmt.engine_rows([engine]) == [expected]
    assert len(expected) == len(efmt.ENGINE_COLUMNS)


def test_engine_rows_keeps_the_order_given() -> None:
    engines = [ENGINE | {"name": f"tg_engine_{i}"} for i in (2, 0, 1)]
    assert [row[0] for row in efmt.engine_rows(engines)] == [
        "tg_engine_2",
        "tg_engine_0",
        "tg_engine_1",
    ]
    assert efmt.engine_rows([]) == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, "0 engines on 0 nodes · capacity 0 runs at once · 0 running · 0 queued"),
        ({"count": 3, "capacity": 24, "running": 5, "queue_depth": 2, "nodes": 2,
          "engines": [ENGINE, ENGINE, ENGINE]},
         "3 engines on 2 nodes · capacity 24 runs at once · 5 running · 2 queued"),
        ({"count": 1, "capacity": 1, "running": 1, "queue_depth": 0, "nodes": 1,
          "engines": [ENGINE]},
         "1 engine on 1 node · capacity 1 run at once · 1 running · 0 queued"),
        ({"count": 3, "capacity": 16, "running": 0, "queue_depth": 7, "nodes": 1,
          "engines": [ENGINE, ENGINE | {"state": "draining"},
                      {"name": "tg_engine_2", "state": "unavailable", "error": "X"}]},
         "3 engines on 1 node · capacity 16 runs at once · 0 running · 7 queued · 1 draining"
         " · 1 unavailable"),
    ],
)  # fmt: skip
def test_engine_summary(answer: dict[str, Any] | None, expected: str) -> None:
    assert efmt.engine_summary(answer) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"count": 3, "added": [], "removed": [], "interrupted": []},
         "Already 3 engines: nothing changed."),
        ({"count": 4, "added": ["tg_engine_3"], "removed": [], "interrupted": []},
         "Added 1 engine: tg_engine_3. Now 4 engines."),
        ({"count": 5, "added": ["tg_engine_3", "tg_engine_4"]},
         "Added 2 engines: tg_engine_3, tg_engine_4. Now 5 engines."),
        ({"count": 1, "added": [], "removed": ["tg_engine_2", "tg_engine_1"],
          "interrupted": ["r7", "r9"]},
         "Removed 2 engines: tg_engine_2, tg_engine_1. 2 runs interrupted, retried on the other"
         " engines: r7, r9. Now 1 engine."),
        ({"count": 2, "added": [], "removed": ["tg_engine_2"], "interrupted": ["r7"]},
         "Removed 1 engine: tg_engine_2. 1 run interrupted, retried on the other engines: r7."
         " Now 2 engines."),
        ({"count": 2, "added": [], "removed": ["tg_engine_2"], "interrupted": []},
         "Removed 1 engine: tg_engine_2. No run was interrupted. Now 2 engines."),
    ],
)  # fmt: skip
def test_scale_outcome(answer: dict[str, Any], expected: str) -> None:
    assert efmt.scale_outcome(answer) == expected


@pytest.mark.parametrize(
    ("count", "grace", "expected"),
    [
        (1, None, (1, None)),
        (256, 0, (256, 0.0)),
        (3.0, 2.5, (3, 2.5)),
        (4, 86_400, (4, 86_400.0)),
    ],
)
def test_scale_request_accepts(
    count: float, grace: float | None, expected: tuple[int, float | None]
) -> None:
    wanted, seconds = efmt.scale_request(count, grace)
    assert (wanted, seconds) == expected and type(wanted) is int


@pytest.mark.parametrize(
    ("count", "grace", "message"),
    [
        (None, None, "Enter how many engines to run (1 to 256)."),
        (0, None, "Engines must be a whole number from 1 to 256, not 0."),
        (257, None, "Engines must be a whole number from 1 to 256, not 257."),
        (2.5, None, "Engines must be a whole number from 1 to 256, not 2.5."),
        (float("nan"), None, "Engines must be a whole number from 1 to 256, not nan."),
        (float("inf"), None, "Engines must be a whole number from 1 to 256, not inf."),
        (2, -1, "Grace must be 0 to 86400 seconds, or empty, not -1."),
        (2, 86_401, "Grace must be 0 to 86400 seconds, or empty, not 86401."),
        (2, float("nan"), "Grace must be 0 to 86400 seconds, or empty, not nan."),
    ],
)
def test_scale_request_refuses(count: float | None, grace: float | None, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        efmt.scale_request(count, grace)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("count", "grace"),
    [(1, None), (256, 0), (257, None), (0, None), (3, 86_400), (3, 86_401), (3, -0.5)],
)
def test_scale_request_agrees_with_the_http_route(count: int, grace: float | None) -> None:
    """The UI refuses what PUT /api/engines refuses, and sends what it accepts."""
    from pydantic import ValidationError

    from serve.routes.api import EngineScale

    try:
        body = EngineScale(count=count, grace_seconds=grace)
    except ValidationError:
        with pytest.raises(ValueError):
            efmt.scale_request(count, grace)
    else:
        assert efmt.scale_request(count, grace) == (body.count, body.grace_seconds)


@pytest.mark.parametrize(
    ("count", "word", "expected"),
    [(0, "run", "0 runs"), (1, "run", "1 run"), (2, "engine", "2 engines")],
)
def test_plural(count: int, word: str, expected: str) -> None:
    assert efmt.plural(count, word) == expected


def test_format_module_does_not_import_gradio() -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(fmt.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(name.split(".")[0] == "gradio" for name in imported)


def test_run_detail_shows_each_check_result_as_a_row() -> None:
    run = {
        "run_id": "r1",
        "state": "failed",
        "checks": [
            {"name": "ids_present", "passed": False, "value": "False", "on_fail": "fail"},
            {"name": "row_count_records", "passed": True, "value": "3 rows", "on_fail": "warn"},
        ],
    }
    rows = fmt.run_detail_rows(run)
    assert ["check ids_present", "FAILED (fail): False"] in rows
    assert ["check row_count_records", "passed: 3 rows"] in rows
    assert not any(row[0] == "checks" for row in rows)  # not a raw list
