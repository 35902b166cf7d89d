"""Issue 19 #4: TG_LOG_FORMAT=json, the formatter and the run-state fields, without Ray (the
Ray actors' JSON lines: tests/integration/test_json_logs.py)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from tg_actors import logs

# the shape of scheduler/states.py's lines, whose arguments become fields
STATE_LINE = "run_state run_id=%s job=%s from=%s to=%s trigger=%s attempt=%d"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logs.install_run_fields()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("tg_actors.scheduler.states")  # a logger of run-state lines
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    level, propagate = logger.level, logger.propagate
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_run_state_line_carries_its_fields(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.info(STATE_LINE, "r-1", "orders", "queued", "running", "manual", 2)
    [line] = lines(out)
    assert line["message"] == "run_state run_id=r-1 job=orders from=queued to=running " + (
        "trigger=manual attempt=2"
    )
    assert (line["run_id"], line["job"], line["state"], line["attempt"]) == (
        "r-1",
        "orders",
        "running",
        2,
    )
    assert (line["from"], line["to"], line["level"], line["logger"]) == (
        "queued",
        "running",
        "INFO",
        "tg_actors.scheduler.states",
    )


def test_every_record_is_one_json_object_per_line(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.warning('two\nlines and "quotes" and %s', "ünïcode")
    logger.info("with extra", extra={"run_id": "r-2", "rows": 5})
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    parsed = lines(out)
    assert len(parsed) == 3 == len(out.getvalue().splitlines())
    assert parsed[0]["message"] == 'two\nlines and "quotes" and ünïcode'
    assert (parsed[1]["run_id"], parsed[1]["rows"]) == ("r-2", 5)
    assert "ValueError: boom" in str(parsed[2]["exc_text"])
    assert all({"ts", "level", "logger", "message"} <= set(p) for p in parsed)


def test_other_lines_get_no_run_fields(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = captured
    logger.info("run %s is done", "r-3")  # not a run_state line
    logger.info("run_state %s", "run_id=r-4")  # no key=%s to match an argument: left alone
    assert [("run_id" in p) for p in lines(out)] == [False, False]


def test_an_extra_of_the_caller_wins_over_a_parsed_field(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = captured
    logger.info("run_state run_id=%s job=%s", "r-5", "a", extra={"job": "b"})
    assert lines(out)[0]["job"] == "b"


def test_log_format_reads_tg_log_format() -> None:
    assert logs.log_format({}) == "text"
    assert logs.log_format({"TG_LOG_FORMAT": "JSON"}) == "json"
    assert logs.log_format({"TG_LOG_FORMAT": "xml"}) == "text"


def test_the_driver_setup_adds_one_json_handler_and_hands_it_to_ray(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TG_LOG_FORMAT", "json")
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        logs.setup()
        logs.setup()  # twice: still one
        own = logs.hand_over_to_ray()
        assert len(own) == 1 and isinstance(own[0].formatter, logs.JsonFormatter)
        assert root.handlers == before
        logs.take_back(own)
        assert root.handlers == [*before, own[0]]
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
