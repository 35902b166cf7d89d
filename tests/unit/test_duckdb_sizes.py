"""The DuckDB size settings of the Database: TG_DUCKDB_MEMORY_LIMIT and
TG_DUCKDB_CHECKPOINT_THRESHOLD are checked by Settings (a bad one named by its variable, not a
failed Database start) and applied to the writer's connection on a real DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from pydantic import ValidationError

from tg_actors.settings import Settings
from tg_actors.store.duckdb import DuckStore


def setting(store: DuckStore, name: str) -> str:
    row = store.con.execute("SELECT current_setting(?)", [name]).fetchone()
    assert row is not None
    return str(row[0])


def test_the_checkpoint_threshold_is_duckdb_s_default_without_one_and_else_as_given(
    tmp_path: Path,
) -> None:
    default = DuckStore(tmp_path / "a.duckdb")
    given = DuckStore(tmp_path / "b.duckdb", memory_limit="300MB", checkpoint_threshold="1GB")
    try:
        duckdb_own = duckdb.connect().execute("SELECT current_setting('checkpoint_threshold')")
        assert (setting(default, "checkpoint_threshold"),) == duckdb_own.fetchone()
        assert setting(given, "checkpoint_threshold") == "953.6 MiB"  # 1GB
        assert setting(given, "memory_limit") == "286.1 MiB"  # 300MB
    finally:
        default.close()
        given.close()


@pytest.mark.parametrize("value", ["256MB", "1GB", "512MiB", "1.5gb", "50%", "-1", " 2GB "])
def test_sizes_duckdb_takes_are_taken(value: str) -> None:
    s = Settings(duckdb_memory_limit=value, duckdb_checkpoint_threshold=value)
    assert s.duckdb_checkpoint_threshold == value.strip() == s.duckdb_memory_limit


@pytest.mark.parametrize("value", ["lots", "100000", "1 GBs", "GB"])
def test_a_bad_size_is_named_by_its_setting(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TG_DUCKDB_CHECKPOINT_THRESHOLD", value)
    with pytest.raises(ValidationError) as err:
        Settings()
    (problem,) = err.value.errors()
    assert problem["loc"] == ("duckdb_checkpoint_threshold",)
    assert "is not a size such as 256MB" in problem["msg"]
