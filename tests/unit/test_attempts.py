"""The Begin/Begun and Commit records: checked once, when built; a bad field is named."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from tg_actors.attempts import Begin, Begun, Commit, Resume
from tg_actors.jobs import TABLE_NAME, Destination, WriteMode
from tg_actors.store import writes


def commit(**kw: Any) -> Commit:
    run_id = kw.pop("run_id", "r1")
    return Commit(run_id, **({"table": "t", "write": "append", "pages": 1} | kw))


def test_a_commit_holds_typed_values() -> None:
    c = commit(primary_key=["id", "k"], cursor=["orders", "7"], batch=None)
    assert c.write is WriteMode.APPEND  # "append" became the enum
    assert c.primary_key == ("id", "k") and c.cursor == ("orders", "7")
    assert c.cursor_job == "orders" and commit().cursor_job is None
    assert commit(write=WriteMode.MERGE).write is WriteMode.MERGE
    assert commit(write="replace").write is WriteMode.REPLACE


def test_a_record_batch_becomes_a_table() -> None:
    batch = pa.table({"id": [1, 2]}).to_batches()[0]
    c = commit(batch=batch)
    assert isinstance(c.batch, pa.Table) and c.batch.num_rows == 2


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("run_id", 7, TypeError),
        ("table", "1abc", ValueError),
        ("table", "main.t", ValueError),
        ("table", "x" * 64, ValueError),
        ("table", None, TypeError),
        ("write", "upsert", ValueError),
        ("write", None, ValueError),
        ("primary_key", "id", TypeError),  # a string is not a list of names
        ("primary_key", ["id", 3], TypeError),
        ("pages", -1, ValueError),
        ("pages", True, TypeError),
        ("pages", 1.0, TypeError),
        ("pages", "2", TypeError),
        ("cursor", ("orders",), TypeError),
        ("cursor", ("orders", 7), TypeError),
        ("cursor", "orders", TypeError),
        ("widen_to_varchar", 1, TypeError),
        ("attempt", "1", TypeError),
        ("attempt", False, TypeError),
        ("batch", [{"id": 1}], TypeError),
    ],
)
def test_a_bad_commit_field_is_refused_naming_it(field: str, value: Any, error: type) -> None:
    with pytest.raises(error, match=rf"^Commit\.{field}\b"):
        commit(**{field: value})


def test_the_run_id_is_positional_and_the_rest_by_keyword() -> None:
    with pytest.raises(TypeError):
        Commit("r1", "t", "append", pages=1)  # type: ignore[misc]
    with pytest.raises(TypeError):
        Commit("r1", table="t", write="append")  # type: ignore[call-arg]  # pages is required


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("run_id", None, TypeError),
        ("job", 3, TypeError),
        ("attempt", "2", TypeError),
        ("attempt", True, TypeError),
        ("incremental", "yes", TypeError),
    ],
)
def test_a_bad_begin_field_is_refused_naming_it(field: str, value: Any, error: type) -> None:
    fields: dict[str, Any] = {"run_id": "r1", "job": "orders", "attempt": 1, "incremental": False}
    run_id = fields.pop("run_id")
    if field == "run_id":
        run_id = value
    else:
        fields[field] = value
    with pytest.raises(error, match=rf"^Begin\.{field}\b"):
        Begin(run_id, **fields)


def test_begun_and_resume_are_checked_too() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    begun = Begun(Resume({"page": 2}, 2, 5), "c", now)
    assert begun.resume is not None and begun.resume.rows == 5
    with pytest.raises(ValueError, match=r"^Resume\.pages"):
        Resume({}, -1, 0)
    with pytest.raises(TypeError, match=r"^Resume\.checkpoint"):
        Resume([], 0, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^Begun\.resume"):
        Begun({"pages": 1}, None, now)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^Begun\.started_at"):
        Begun(None, None, "now")  # type: ignore[arg-type]


def test_records_are_frozen_slotted_and_survive_pickling() -> None:
    c = commit(cursor=("orders", "7"), batch=pa.table({"id": [1]}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.pages = 2  # type: ignore[misc]
    assert not hasattr(c, "__dict__")
    again = pickle.loads(pickle.dumps(c))  # what Ray does between engine and Database
    assert again.write is WriteMode.APPEND and again.batch.equals(c.batch)
    b = Begin("r1", job="orders", attempt=2, incremental=True)
    assert pickle.loads(pickle.dumps(b)) == b


def test_one_table_name_rule_for_jobs_commits_and_the_store() -> None:
    assert not hasattr(writes, "TABLE_NAME")  # spelled once, in tg_actors/jobs.py
    for name in ("t", "_x", "Odd_1", "x" * 63):
        assert TABLE_NAME.fullmatch(name)
        Destination(table=name)
        commit(table=name)
    for bad in ("1abc", "a-b", "x" * 64, "t\n"):
        assert not TABLE_NAME.fullmatch(bad)
        with pytest.raises(ValueError):
            Destination(table=bad)
        with pytest.raises(ValueError):
            commit(table=bad)
