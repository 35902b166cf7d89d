"""Bad input caught at validation: transform SQL by DuckDB's parser, durations,
time zones and JSONPaths that used to escape as 500s, jobs too deep or too big (YAML alias
bombs), and the OpenAPI documenting the job body."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tg_actors.config.files import parse_yaml
from tg_actors.errors import JobValidationError
from tg_actors.jobs import MAX_DEPTH, MAX_VALUES, check_shape, parse_job
from tg_actors.sources.batches import records_to_arrow
from tg_actors.transform import apply_transform, transform_sql_problem


def job(**extra: Any) -> dict[str, Any]:
    return {
        "name": "drill",
        "source": {"url": "http://127.0.0.1:9/"},
        "destination": {"table": "drill"},
    } | extra


def errors_of(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(JobValidationError) as caught:
        parse_job(data, "job")
    return caught.value.errors


# -- transform.sql ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id FROM records",
        "select id from RECORDS where amount > 0",
        'SELECT "order" FROM "records"',
        "WITH a AS (SELECT * FROM records), b AS (SELECT * FROM a) SELECT * FROM b",
        "FROM records",
        "SELECT * FROM records r JOIN records s USING (id)",
        "SELECT id, unnest(tags) FROM records",
        "SELECT r.id, t.tag FROM records r, unnest(r.tags) AS t(tag)",
        "SELECT * FROM records, range(3) AS k(n)",
        "SELECT * FROM records WHERE id IN (SELECT id FROM records WHERE amount > 1)",
        "SELECT status, count(*) AS n FROM records GROUP BY status",
        "SELECT * FROM records;",
        "  SELECT 1 AS x, * FROM records  -- a comment",
    ],
)
def test_read_only_selects_over_records_pass(sql: str) -> None:
    assert transform_sql_problem(sql) is None
    assert parse_job(job(transform={"sql": sql})).transform is not None


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("ATTACH 'x.db' AS x", "not ATTACH"),
        ("COPY (SELECT * FROM records) TO '/tmp/x.csv'", "not COPY"),
        ("INSTALL httpfs", "not LOAD"),
        ("LOAD 'httpfs'", "not LOAD"),
        ("CREATE VIEW v AS SELECT * FROM records", "not CREATE"),
        ("INSERT INTO records SELECT * FROM records", "not INSERT"),
        ("DROP TABLE records", "not DROP"),
        ("PRAGMA enable_profiling", "not PRAGMA"),
        ("SET memory_limit = '1TB'", "not SET"),
        ("RESET memory_limit", "not SET"),
        ("EXPLAIN SELECT * FROM records", "not EXPLAIN"),
        ("CHECKPOINT", "not CALL"),
        ("SELECT * FROM records; SELECT 1", "holds 2 statements"),
        ("", "holds no statement"),
        ("SELEC 1", "does not parse"),
        ("SELECT * FROM read_csv('/etc/passwd')", "calls read_csv()"),
        ("SELECT * FROM read_csv_auto('/etc/passwd')", "calls read_csv_auto()"),
        ("SELECT * FROM read_parquet('s3://bucket/x')", "calls read_parquet()"),
        ("SELECT * FROM glob('/*')", "calls glob()"),
        ("SELECT * FROM records, duckdb_secrets()", "calls duckdb_secrets()"),
        ("SELECT * FROM main.range(3)", "calls range()"),  # a qualified one is not ours
        ("SELECT (SELECT content FROM read_text('/etc/passwd')) FROM records", "read_text"),
        ("WITH x AS (FROM read_blob('/etc/passwd')) SELECT * FROM records", "read_blob"),
        ("SELECT * FROM '/etc/passwd'", "reads '/etc/passwd'"),
        ("SELECT * FROM 'https://example.com/x.csv'", "reads 'https://example.com/x.csv'"),
        ("SELECT * FROM other.main.records", "reads 'other.main.records'"),
        ("SELECT * FROM tg.jobs", "reads 'tg.jobs'"),
        ("DESCRIBE records", "DESCRIBE"),
        ("SHOW TABLES", "DESCRIBE, SHOW"),
        ("SELECT 1", "must read from `records`"),
        ("VALUES (1)", "must read from `records`"),
    ],
)
def test_anything_else_is_refused_naming_transform_sql(sql: str, problem: str) -> None:
    found = transform_sql_problem(sql)
    assert found is not None and problem in found, found
    errors = errors_of(job(transform={"sql": sql}) if sql else job(transform={"sql": " "}))
    assert [loc for loc, _ in errors] == ["transform.sql"]


def test_the_runtime_sandbox_is_still_the_second_wall() -> None:
    # a stored job that predates validation still cannot read a file when it runs
    from tg_actors.errors import TransformError

    with pytest.raises(TransformError, match="disabled by configuration"):
        apply_transform(records_to_arrow([{"id": 1}]), "SELECT * FROM read_text('/etc/passwd')")


# -- values that escaped validation as exceptions (HTTP 500) ---------------------------------


@pytest.mark.parametrize(
    ("extra", "loc", "words"),
    [
        ({"timeout": "99999999999d"}, "timeout", "at most 3650d"),
        ({"timeout": "9" * 400}, "timeout", "at most"),
        ({"timeout": 1e300}, "timeout", "at most"),
        ({"timeout": float("nan")}, "timeout", "finite"),
        ({"timeout": ["1s"]}, "timeout", "like 30s"),
        ({"timeout": {"s": 1}}, "timeout", "like 30s"),
        ({"retries": {"backoff": [1]}}, "retries.backoff", "like 30s"),
        (
            {"schedule": {"interval": None, "cron": "* * * * *", "jitter": [1]}},
            "schedule.jitter",
            "",
        ),
        ({"schedule": {"cron": "* * * * *", "timezone": "a" * 300}}, "schedule.timezone", "IANA"),
        ({"source": {"url": "http://x/", "records": "$[[["}}, "source.records", "JSONPath"),
        (
            {"source": {"url": "http://x/", "paginate": {"type": "next_url", "path": "$..["}}},
            "source.paginate.path",
            "JSONPath",
        ),
        (
            {"source": {"url": "http://x/", "paginate": {"type": "page", "total_path": "\x00"}}},
            "source.paginate.total_path",
            "JSONPath",
        ),
    ],
)
def test_bad_values_are_validation_errors_naming_the_field(
    extra: dict[str, Any], loc: str, words: str
) -> None:
    errors = errors_of(job(**extra))
    assert any(where == loc and words in msg for where, msg in errors), errors


def test_durations_within_bounds_still_parse() -> None:
    spec = parse_job(job(timeout="3650d", retries={"backoff": 0.5, "max_backoff": "1h30m"}))
    assert spec.timeout.days == 3650 and spec.retries.backoff.total_seconds() == 0.5


# -- too deep, too big --------------------------------------------------------------------------


def test_nesting_past_the_limit_is_refused_at_its_field() -> None:
    nested: Any = "leaf"
    for _ in range(MAX_DEPTH + 5):
        nested = [nested]
    errors = errors_of(job(source={"url": "http://x/", "method": "POST", "body": nested}))
    assert errors == [("source.body", f"nested deeper than {MAX_DEPTH} levels")]
    shallow: Any = "leaf"
    for _ in range(20):
        shallow = {"k": shallow}
    assert parse_job(job(source={"url": "http://x/", "method": "POST", "body": shallow}))


def test_yaml_alias_bomb_is_refused_quickly() -> None:
    levels = "".join(
        f"    {n}: &{n} [{', '.join(['*' + p] * 9)}]\n"
        for p, n in zip("abcdefghi", "bcdefghij", strict=True)
    )
    text = (
        "name: bomb\ndestination: {table: t}\nsource:\n  url: 'http://x/'\n  method: POST\n"
        "  body:\n    a: &a [x, x, x, x, x, x, x, x, x]\n" + levels
    )  # 9^10 values once expanded
    began = time.monotonic()
    errors = errors_of(parse_yaml(text, "job"))
    assert errors == [
        ("", f"the job holds more than {MAX_VALUES} values (YAML aliases expanding?)")
    ]
    assert time.monotonic() - began < 2


def test_self_referencing_yaml_is_refused() -> None:
    data = parse_yaml("name: x\nsource: &s {url: 'http://x/', body: *s}\n", "job")
    with pytest.raises(JobValidationError):
        check_shape(data, "job")


def test_yaml_nested_past_the_parser_stack_is_an_error_not_a_crash() -> None:
    with pytest.raises(JobValidationError, match="nested too deeply"):
        parse_yaml("[" * 5000 + "]" * 5000, "job")


# -- the OpenAPI documents the job body -------------------------------------------------------


def test_openapi_documents_the_job_body_of_put_and_validate() -> None:
    from serve.routes.api import build_api

    spec = build_api(None, "token").openapi()  # type: ignore[arg-type]
    for method, path in (("put", "/api/jobs/{name}"), ("post", "/api/jobs/{name}/validate")):
        content = spec["paths"][path][method]["requestBody"]["content"]
        assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/JobSpec"}
        assert content["application/yaml"]["schema"]["type"] == "string"
    schemas = spec["components"]["schemas"]
    assert {"JobSpec", "HttpSource", "Destination", "Schedule"} <= set(schemas)
    assert "$defs" not in schemas["JobSpec"]
    assert schemas["JobSpec"]["properties"]["name"]["pattern"] == "^[a-z][a-z0-9_]{0,62}$"


def test_a_spec_stored_before_these_checks_still_loads() -> None:
    """The checks guard what comes in (API, UI, files); a job the database already holds is
    read back by the scheduler and the engines without them, so it is never locked out."""
    from tg_actors.jobs import JobSpec

    stored = job(
        timeout="4000d",
        transform={"sql": "SELECT 1 AS one"},
        source={"url": "http://127.0.0.1:9/", "records": "$[[["},
    )
    spec = JobSpec.model_validate(stored)
    assert spec.timeout.days == 4000 and spec.transform is not None
    assert {loc for loc, _ in errors_of(stored)} == {"timeout", "transform.sql", "source.records"}
