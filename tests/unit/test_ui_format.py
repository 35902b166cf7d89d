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
    RunNotFound,
    TableNotFound,
)
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
    ("preview", "columns", "rows"),
    [
        (None, [], []),
        ({"columns": ["id", "name"], "rows": []}, ["id", "name"], []),
        ({"columns": ["id", "name"], "rows": [[1, "a"], [2, None]]}, ["id", "name"],
         [[1, "a"], [2, None]]),
    ],
)  # fmt: skip
def test_preview_frame(preview: dict[str, Any] | None, columns: list[str], rows: list[Any]) -> None:
    frame = fmt.preview_frame(preview)
    assert list(frame.columns) == columns
    assert frame.astype(object).where(frame.notna(), None).values.tolist() == rows


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


def test_format_module_does_not_import_gradio() -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(fmt.__file__).read_text(encoding="utf-8"))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(name.split(".")[0] == "gradio" for name in imported)
