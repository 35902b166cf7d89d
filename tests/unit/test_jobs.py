from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tg_actors.durations import format_duration, parse_duration
from tg_actors.errors import JobValidationError
from tg_actors.jobs import ApiKeyAuth, Catchup, Overlap, PagePaginate, WriteMode, parse_job


def job(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "orders",
        "source": {"url": "http://127.0.0.1:9/orders"},
        "destination": {"table": "orders"},
    }
    base.update(overrides)
    return base


def errors_of(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(JobValidationError) as info:
        parse_job(data, "f.yaml")
    return info.value.errors


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("250ms", 0.25),
        (12, 12),
        ("7", 7),
    ],
)
def test_durations_parse(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "x", "30 sec", "5w", "-1s", "s30"])
def test_durations_reject(bad: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    "seconds",
    [0, 0.25, 0.0005, 1, 1.5, 59, 60, 61, 3600, 5400, 86400, 90061, 37212305.1275088, 1e9 + 0.1],
)
def test_durations_round_trip(seconds: float) -> None:
    # a stored job's durations are written by format_duration and read back on every load
    # (schemathesis found `3.72123e+07s`, which the parser refused: a 500 on GET)
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


def test_full_contract_example_parses() -> None:
    spec = parse_job(
        {
            "name": "orders",
            "description": "Orders from the shop API",
            "enabled": True,
            "schedule": {
                "cron": "*/15 * * * *",
                "timezone": "Europe/Berlin",
                "catchup": "latest",
                "overlap": "skip",
                "jitter": "0s",
            },
            "triggers": {"after": ["customers"]},
            "priority": 50,
            "max_active_runs": 1,
            "timeout": "30m",
            "retries": {"max_attempts": 3, "backoff": "2s", "max_backoff": "5m"},
            "source": {
                "type": "http",
                "url": "https://shop.example.com/api/orders",
                "method": "GET",
                "params": {"status": "paid"},
                "headers": {"Accept": "application/json"},
                "body": None,
                "auth": {"type": "bearer", "token": "${SHOP_TOKEN}"},
                "records": "$.data",
                "paginate": {"type": "link_header"},
                "incremental": {
                    "cursor_field": "updated_at",
                    "param": "updated_since",
                    "initial": "2024-01-01T00:00:00Z",
                    "lookback": "0s",
                },
                "rate_limit": {"per_second": 10},
                "timeout": "30s",
            },
            "transform": {"sql": "SELECT id FROM records"},
            "destination": {"table": "orders", "write": "merge", "primary_key": ["id"]},
        }
    )
    assert spec.schedule is not None
    assert spec.schedule.catchup is Catchup.LATEST and spec.schedule.overlap is Overlap.SKIP
    assert spec.timeout == timedelta(minutes=30)
    assert spec.retries.max_backoff == timedelta(minutes=5)
    assert spec.destination.write is WriteMode.MERGE


@pytest.mark.parametrize(
    ("data", "loc", "fragment"),
    [
        (job(name="Orders"), "name", "pattern"),
        (job(sorce={}), "sorce", "unknown field"),
        (job(source={"url": "http://x", "methd": "GET"}), "source.methd", "unknown field"),
        (job(source={"url": "ftp://x"}), "source.url", "pattern"),
        (
            job(source={"url": "http://x", "auth": {"type": "bearer"}}),
            "source.auth.token",
            "required",
        ),
        (job(source={"url": "http://x", "auth": {"type": "magic"}}), "source.auth", "magic"),
        (
            job(source={"url": "http://x", "paginate": {"type": "pages"}}),
            "source.paginate",
            "'page'",
        ),
        (
            job(source={"url": "http://x", "paginate": {"type": "page", "size": 0}}),
            "source.paginate.size",
            "greater",
        ),
        (job(schedule={"interval": "soon"}), "schedule.interval", "invalid duration"),
        (job(schedule={"cron": "* *"}), "schedule.cron", "invalid cron"),
        (job(schedule={"interval": "1m", "cron": "* * * * *"}), "schedule", "exactly one"),
        (
            job(schedule={"interval": "1m", "timezone": "Mars/Olympus"}),
            "schedule.timezone",
            "unknown IANA",
        ),
        (job(schedule={"interval": "1m", "catchup": "some"}), "schedule.catchup", "none"),
        (
            job(destination={"table": "t", "write": "merge"}),
            "destination",
            "primary_key is required",
        ),
        (job(priority=101), "priority", "less than or equal"),
        (job(triggers={"after": ["Bad-Name"]}), "triggers.after.0", "pattern"),
    ],
)
def test_errors_name_the_field(data: dict[str, Any], loc: str, fragment: str) -> None:
    found = errors_of(data)
    assert any(at == loc and fragment in m for at, m in found), found


def test_error_message_format_is_file_path_message() -> None:
    with pytest.raises(JobValidationError) as info:
        parse_job(job(sorce={}), "configs/jobs/x.yaml")
    assert str(info.value) == "configs/jobs/x.yaml: sorce: unknown field"


def test_not_a_mapping() -> None:
    assert errors_of(["a"]) == [("", "a job must be a mapping of fields")]


def test_secrets_masked_for_humans_kept_for_storage() -> None:
    spec = parse_job(
        job(
            source={
                "url": "http://x",
                "auth": {"type": "api_key", "name": "X-Key", "value": "${SHOP_KEY}", "in": "query"},
                "headers": {"X-Other": "pre-${OTHER}-post", "Accept": "json"},
            }
        )
    )
    assert isinstance(spec.source.auth, ApiKeyAuth) and spec.source.auth.in_ == "query"
    public = spec.to_public()
    assert public["source"]["auth"]["value"] == "***"
    assert public["source"]["headers"] == {"X-Other": "***", "Accept": "json"}
    assert public["source"]["auth"]["in"] == "query"
    for text in (repr(spec), str(spec), repr(spec.source), repr(spec.source.auth)):
        assert "SHOP_KEY" not in text and "OTHER" not in text
    stored = spec.to_stored()
    assert stored["source"]["auth"]["value"] == "${SHOP_KEY}"
    assert parse_job(stored) == spec  # the stored form round-trips


def test_defaults() -> None:
    spec = parse_job(job(source={"url": "http://x", "paginate": {"type": "page"}}))
    assert spec.priority == 50 and spec.max_active_runs == 1 and spec.enabled
    assert isinstance(spec.source.paginate, PagePaginate) and spec.source.paginate.param == "page"
    assert spec.source.method == "GET" and spec.source.records == "$"


def test_a_job_after_itself_is_a_field_error() -> None:
    # it would run back to back forever: refused at the entry that names the job itself
    found = errors_of(job(triggers={"after": ["customers", "orders"]}))
    assert found == [("triggers.after.1", "a job cannot run after itself ('orders')")]
    assert parse_job(job(triggers={"after": ["customers"]})).triggers.after == ["customers"]
