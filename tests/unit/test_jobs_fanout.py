"""Job files with for_each and window (CONTRACT §7.1): errors by field path, nothing
accepted that a run could not use; and the pure decisions of a backfill and a refresh
(which filter a plain job sends, what its commit writes)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tg_actors.attempts import Begun
from tg_actors.engine.fanout import build_commit, plain_filter
from tg_actors.engine.sync import SyncResult
from tg_actors.errors import JobValidationError
from tg_actors.jobs import JobSpec, WriteMode, parse_job
from tg_actors.runstate import Trigger
from tg_actors.scheduler.planning import backfill_problem

T1, T2 = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)


def job(write: str = "merge", **source: Any) -> JobSpec:
    return parse_job(
        {
            "name": "child",
            "source": {"url": "http://api.test/c/{customer_id}/orders", **source},
            "destination": {"table": "t", "write": write, "primary_key": ["id"]},
        },
        "jobs/child.yaml",
    )


def error_of(**source: Any) -> str:
    with pytest.raises(JobValidationError) as info:
        job(**source)
    return str(info.value)


def test_values_and_sql_rows_name_the_placeholders_a_request_may_use() -> None:
    spec = job(for_each={"values": [{"customer_id": 1}, {"customer_id": 2}]})
    assert spec.source.for_each is not None and spec.source.for_each.concurrency == 4
    spec = job(for_each={"sql": "SELECT id AS customer_id FROM customers"})
    assert spec.source.for_each is not None and spec.source.for_each.columns() == ["customer_id"]
    star = job(for_each={"sql": "SELECT * FROM customers"})  # columns known only at run time
    assert star.source.for_each is not None and star.source.for_each.columns() is None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"for_each": {"values": [{"id": 1}]}},
         "source.url: unknown placeholder {customer_id}; the request can use {id}"),
        ({"for_each": {"values": [{"customer_id": 1}]}, "params": {"since": "{window_start}"}},
         "source.params.since: unknown placeholder {window_start}"),
        ({"for_each": {"values": [{"customer_id": 1}], "include": ["name"]}},
         "source.for_each.include.0: 'name' is not a column of the for_each rows (customer_id)"),
        ({"for_each": {"values": [{"customer_id": 1}, {"customer": 2}]}},
         "source.for_each: values[1] has the columns ['customer'], values[0]"),
        ({"for_each": {"sql": "DELETE FROM customers"}},
         "source.for_each.sql: DELETE is not read-only"),
        ({"for_each": {"sql": "SELECT id AS customer_id FROM read_csv('/etc/passwd')"}},
         "source.for_each.sql: calls read_csv()"),
        ({"for_each": {"sql": "SELECT 1", "values": [{"customer_id": 1}]}},
         "source.for_each: give exactly one of sql or values"),
        ({"for_each": {"values": [{"customer_id": 1}]},
          "window": {"start": "2024-02-01", "step": "1d", "end": "2024-01-01"}},
         "source.window: end must be after start"),
        ({"for_each": {"values": [{"customer_id": 1}]},
          "window": {"start": "2024-01-01", "step": "0s"}},
         "source.window.step: step must be at least 1s"),
        ({"for_each": {"values": [{"customer_id": 1}]},
          "window": {"start": "2024-01-01", "step": "1d", "format": "unix"}},
         "source.window.format: Input should be 'iso', 'date', 'epoch' or 'epoch_ms'"),
    ],
)  # fmt: skip
def test_bad_for_each_and_window_fields_are_named(source: dict[str, Any], message: str) -> None:
    assert message in error_of(**source)


def test_braces_are_text_in_a_job_without_for_each_or_window() -> None:
    spec = job()  # {customer_id} in the url of a plain job: sent as written, as always
    assert spec.source.url.endswith("{customer_id}/orders")


def test_a_window_job_with_rows_and_a_literal_brace() -> None:
    spec = job(
        for_each={"values": [{"customer_id": 1}]},
        window={"start": "2024-01-01", "step": "1d", "lookback": "1h", "format": "epoch"},
        params={"from": "{window_start}", "q": "{{literal}}"},
    )
    assert spec.source.window is not None and spec.source.window.start == T1
    assert spec.source.window.end == "now"


def test_what_a_backfill_needs() -> None:
    windowed = job(
        for_each={"values": [{"customer_id": 1}]}, window={"start": "2024-01-01", "step": "1d"}
    )
    assert backfill_problem(windowed, T1, T2) is None
    assert "must be before" in str(backfill_problem(windowed, T2, T1))
    bounded = job(incremental={"cursor_field": "u", "param": "since", "until_param": "until"})
    assert backfill_problem(bounded, T1, T2) is None
    unbounded = job(incremental={"cursor_field": "u", "param": "since"})
    assert "no source.window and no source.incremental.until_param" in str(
        backfill_problem(unbounded, T1, T2)
    )
    replaced = job("replace", incremental={"cursor_field": "u", "param": "s", "until_param": "u"})
    assert "writes with replace" in str(backfill_problem(replaced, T1, T2))


def begun(trigger: str, cursor: str | None = "2024-03-01") -> Begun:
    span = (T1, T2) if trigger == Trigger.BACKFILL else None
    return Begun(None, cursor, T2, trigger=trigger, range=span)


def test_a_plain_job_backfill_sends_its_range_and_commits_no_cursor() -> None:
    spec = job(incremental={"cursor_field": "u", "param": "since", "until_param": "until"})
    cursor, params = plain_filter(spec, begun(Trigger.BACKFILL))
    assert cursor is None
    assert params == {"since": "2024-01-01T00:00:00Z", "until": "2024-02-01T00:00:00Z"}
    result = SyncResult(5, 1, 0.1, cursor="2024-01-31")
    commit = build_commit(spec, "r1", 1, begun(Trigger.BACKFILL), result)
    assert commit.cursor is None and commit.positions is None and not commit.reset_state
    assert commit.write is WriteMode.MERGE


def test_a_refresh_reads_from_initial_and_replaces_the_table_and_the_cursor() -> None:
    spec = job(incremental={"cursor_field": "u", "param": "since", "initial": "2020"})
    assert plain_filter(spec, begun(Trigger.REFRESH)) == (None, None)  # None: from initial
    assert plain_filter(spec, begun(Trigger.MANUAL)) == ("2024-03-01", None)
    commit = build_commit(spec, "r1", 1, begun(Trigger.REFRESH), SyncResult(5, 1, 0.1, "2024-01"))
    assert commit.write is WriteMode.REPLACE and commit.reset_state
    assert commit.cursor == ("child", "2024-01")
