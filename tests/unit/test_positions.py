"""Errors by line (config/positions.py, config/files.py `placed`): every error of a YAML job
names the line and column of its field (or of the nearest field the file has), an unknown
key gets the closest valid one at that place, and the API's 422 carries line and column."""

from __future__ import annotations

import pytest
import yaml

from serve.errors import validation_detail
from tg_actors.config.files import parse_job_text
from tg_actors.config.positions import did_you_mean, key_positions, locate
from tg_actors.errors import JobValidationError

TEXT = """\
name: orders
source:
  url: http://api.test/orders
  methd: GET
  paginate: {type: page, parm: p}
  auth:
    type: bearer
    tokn: abc
  rules:
    - {status: 404, action: skip}
    - {status: 200, action: skip}
destination:
  table: orders
  write: merge
"""


def test_each_key_and_item_has_its_line_and_column() -> None:
    positions = key_positions(TEXT)
    assert positions[("source", "methd")] == (4, 3)
    assert positions[("source", "paginate", "parm")] == (5, 26)
    assert positions[("source", "rules", "1")] == (11, 7)
    assert locate(positions, "destination.primary_key") == (12, 1)  # missing: its parent
    assert locate(positions, "nowhere") is None
    assert key_positions("a: [unclosed") == {}


@pytest.mark.parametrize(
    ("loc", "hint"),
    [("source.methd", "method"), ("source.paginate.parm", "param"),
     ("source.auth.tokn", "token"), ("sorce", "source"), ("source.xyzzy", None)],
)  # fmt: skip
def test_did_you_mean_reads_the_valid_keys_of_that_place(loc: str, hint: str | None) -> None:
    assert did_you_mean(loc, yaml.safe_load(TEXT)) == hint


def test_a_job_text_reports_every_error_at_its_place() -> None:
    with pytest.raises(JobValidationError) as info:
        parse_job_text(TEXT, "jobs/orders.yaml")
    lines = str(info.value).splitlines()
    assert "jobs/orders.yaml:4:3: source.methd: unknown field; did you mean `method`?" in lines
    assert "jobs/orders.yaml:8:5: source.auth.tokn: unknown field; did you mean `token`?" in lines
    assert any(
        line.startswith("jobs/orders.yaml:11:7: source.rules.1: a skip rule") for line in lines
    )
    assert (
        "jobs/orders.yaml:12:1: destination: primary_key is required when write is merge" in lines
    )
    detail = validation_detail(info.value)
    methd = next(d for d in detail if d["loc"] == ["body", "source", "methd"])
    assert (methd["line"], methd["column"]) == (4, 3)
