from __future__ import annotations

from pathlib import Path

import pytest

from tg_actors.cli.main import main
from tg_actors.config.files import (
    ANNOUNCE_BATCH,
    announcements,
    cycle_errors,
    folder_jobs,
    load_jobs,
    stored_after,
)
from tg_actors.interfaces import Upserted

GOOD = """
name: good
source: {url: "http://127.0.0.1:9/x"}
destination: {table: good}
"""


def test_shipped_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "configs"
    examples = sorted(p for p in (root / "examples").iterdir() if p.is_dir())
    assert {p.name for p in examples} >= {"online", "auth", "longtail", "formats"}
    report = load_jobs([root / "jobs", *examples])
    assert not report.errors, report.errors
    assert "demo_orders" in report.jobs


def test_bad_file_reported_by_name_others_load(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(
        "name: bad\nsource: {url: 'http://x', methd: GET}\ndestination: {table: t}\n"
    )
    (tmp_path / "c.yaml").write_text("name: [unclosed\n")
    (tmp_path / "d.yaml").write_text(GOOD)  # same name as a.yaml
    report = load_jobs([tmp_path])
    assert list(report.jobs) == ["good"]
    text = [str(e) for e in report.errors]
    # FILE:LINE:COLUMN of the field, and the key it most likely meant
    assert text[0] == (
        f"{tmp_path / 'b.yaml'}:2:27: source.methd: unknown field; did you mean `method`?"
    )
    assert text[1].startswith(
        f"{tmp_path / 'c.yaml'}: invalid YAML: line 2, column 1: expected ','"
    )
    assert (
        text[2]
        == f"{tmp_path / 'd.yaml'}:2:1: name: job 'good' is already defined in {tmp_path / 'a.yaml'}"
    )


def test_tg_validate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert main(["validate", str(good)]) == 0
    assert f"{good}: ok (job good)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad\nsource: {url: 'http://x'}\ndestination: {table: t}\n")
    assert main(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:1:1: name: String should match pattern" in out
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 1
    assert "no such file" in capsys.readouterr().out


def test_db_named_tg_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "x", "--db", "data/tg.duckdb"]) == 2
    assert "clashes with the schema 'tg'" in capsys.readouterr().err


def after_job(name: str, *after: str) -> str:
    return (
        f"name: {name}\ntriggers: {{after: [{', '.join(after)}]}}\n"
        'source: {url: "http://127.0.0.1:9/x"}\n'
        f"destination: {{table: {name}}}\n"
    )


def test_a_cycle_of_triggers_after_is_reported_on_each_file_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a -> b -> c -> a would run back to back forever; d (after a) and e are fine
    (tmp_path / "a.yaml").write_text(after_job("a", "c"))
    (tmp_path / "b.yaml").write_text(after_job("b", "a"))
    (tmp_path / "c.yaml").write_text(after_job("c", "b"))
    (tmp_path / "d.yaml").write_text(after_job("d", "a"))
    (tmp_path / "e.yaml").write_text(after_job("e", "e"))  # itself: the field error
    report = load_jobs([tmp_path])
    assert sorted(report.jobs) == ["d"]
    text = sorted(str(e) for e in report.errors)
    cycle = "makes a cycle: a -> b -> c -> a (its jobs would trigger each other forever)"
    assert text == [
        f"{tmp_path / 'a.yaml'}:2:20: triggers.after.0: 'c' {cycle}",
        f"{tmp_path / 'b.yaml'}:2:20: triggers.after.0: 'a' {cycle}",
        f"{tmp_path / 'c.yaml'}:2:20: triggers.after.0: 'b' {cycle}",
        f"{tmp_path / 'e.yaml'}:2:20: triggers.after.0: a job cannot run after itself ('e')",
    ]
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'b.yaml'}:2:20: triggers.after.0: 'a' {cycle}" in out
    assert f"{tmp_path / 'd.yaml'}: ok (job d)" in out


def test_a_file_closing_a_cycle_with_stored_jobs_is_refused(tmp_path: Path) -> None:
    # what ConfigManager.load_dir checks at `tg up`: stored x runs after file job f
    (tmp_path / "f.yaml").write_text(after_job("f", "y", "x"))
    (tmp_path / "g.yaml").write_text(after_job("g", "x"))
    report = load_jobs([tmp_path])
    assert not report.errors
    files = {name: (str(path), spec) for name, (path, spec) in report.jobs.items()}
    errors = cycle_errors(files, {"x": ["f"], "f": [], "s": ["t"], "t": ["s"]})
    assert list(errors) == ["f"]  # the stored s <-> t cycle is not the files' doing
    assert str(errors["f"]) == (
        f"{tmp_path / 'f.yaml'}: triggers.after.1: 'x' makes a cycle: f -> x -> f"
        " (its jobs would trigger each other forever)"
    )


def test_a_folder_to_store_leaves_out_what_closes_a_cycle_with_the_stored_jobs(
    tmp_path: Path,
) -> None:
    assert folder_jobs(tmp_path / "missing", {}) is None
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    job = "name: {name}\nsource: {{url: 'http://127.0.0.1:9/x'}}\ndestination: {{table: t}}\n"
    (jobs / "a.yaml").write_text(job.format(name="a") + "triggers: {after: [b]}\n")
    (jobs / "c.yaml").write_text(job.format(name="c"))
    stored = stored_after([{"name": "b", "spec": {"triggers": {"after": ["a"]}}}])
    assert stored == {"b": ["a"]}
    report = folder_jobs(jobs, stored)
    assert report is not None and sorted(report.jobs) == ["c"]
    assert [str(e).splitlines()[0] for e in report.errors] == [
        f"{jobs / 'a.yaml'}: triggers.after.0: 'b' makes a cycle: a -> b -> a"
        " (its jobs would trigger each other forever)"
    ]


def test_announcements_come_in_batches_within_a_groups_bound() -> None:
    stored = [(f"j{i}", {"name": f"j{i}"}) for i in range(ANNOUNCE_BATCH * 2 + 1)]
    done = [Upserted(name, created=True, paused=name == "j7") for name, _ in stored]
    batches = announcements(stored, done)
    assert [len(b) for b in batches] == [ANNOUNCE_BATCH, ANNOUNCE_BATCH, 1]
    flat = [m for batch in batches for m in batch]
    assert [m.name for m in flat] == [name for name, _ in stored]
    assert [m.name for m in flat if m.paused] == ["j7"]
    assert flat[0].spec == {"name": "j0"}
    assert announcements([], []) == []
