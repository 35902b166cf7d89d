"""Job files on disk: YAML -> JobSpec, with errors as `FILE: field.path: message`; a jobs
folder as it is to be stored, and the `config` messages that announce what was stored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tg_actors.config.dependencies import after_edges, find_cycle, spell
from tg_actors.config.positions import did_you_mean, key_positions, locate
from tg_actors.errors import JobValidationError
from tg_actors.interfaces import Upserted
from tg_actors.jobs import JobSpec, parse_job
from tg_actors.messages import JobUpserted

JOB_SUFFIXES = (".yaml", ".yml")


@dataclass
class LoadReport:
    jobs: dict[str, tuple[Path, JobSpec]] = field(default_factory=dict)
    errors: list[JobValidationError] = field(default_factory=list)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except RecursionError:  # the parser recurses per level: "[[[[...]]]]" thousands deep
        raise JobValidationError(source, [("", "invalid YAML: nested too deeply")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise JobValidationError(source, [("", f"invalid YAML: {where}{problem}")]) from None


def load_job_file(path: Path) -> JobSpec:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise JobValidationError(str(path), [("", f"cannot read file: {exc.strerror}")]) from None
    return parse_job_text(text, str(path))


def parse_job_text(text: str, source: str) -> JobSpec:
    """A job from its YAML text; JobValidationError with each field's line and column, and
    for an unknown key the closest valid one ("did you mean `method`?")."""
    data = parse_yaml(text, source)
    try:
        return parse_job(data, source)
    except JobValidationError as exc:
        raise placed(exc, text, data) from None


def placed(exc: JobValidationError, text: str, data: Any) -> JobValidationError:
    """`exc` with the (line, column) of each field in `text`, unknown keys given a hint."""
    positions = key_positions(text)
    errors, where = [], {}
    for loc, msg in exc.errors:
        if msg == "unknown field" and loc:
            hint = did_you_mean(loc, data)
            msg = f"unknown field; did you mean `{hint}`?" if hint else msg
        spot = locate(positions, loc)
        if spot is not None:
            where[loc] = spot
        errors.append((loc, msg))
    return JobValidationError(exc.source, errors, where)


def job_files(paths: list[Path]) -> list[Path]:
    """Expand folders into their job files (sorted); keep files as given."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix in JOB_SUFFIXES))
        else:
            out.append(path)
    return out


def load_jobs(paths: list[Path]) -> LoadReport:
    """Validate every file; a bad file is reported and skipped, the others load.
    Two files defining the same job name: the second is an error."""
    report = LoadReport()
    for path in job_files(paths):
        try:
            spec = load_job_file(path)
        except JobValidationError as exc:
            report.errors.append(exc)
            continue
        if spec.name in report.jobs:
            first = report.jobs[spec.name][0]
            twice = [("name", f"job {spec.name!r} is already defined in {first}")]
            report.errors.append(_placed_in(path, JobValidationError(str(path), twice)))
            continue
        report.jobs[spec.name] = (path, spec)
    candidates = {name: (str(path), spec) for name, (path, spec) in report.jobs.items()}
    for name, error in cycle_errors(candidates).items():
        report.errors.append(_placed_in(report.jobs[name][0], error))
        del report.jobs[name]
    return report


def _placed_in(path: Path, exc: JobValidationError) -> JobValidationError:
    """`exc` (about the file at `path`, read fine a moment ago) with its fields' places."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return exc
    return placed(exc, text, parse_yaml(text, str(path)))


def cycle_errors(
    candidates: Mapping[str, tuple[str, JobSpec]], others: Mapping[str, list[str]] | None = None
) -> dict[str, JobValidationError]:
    """The candidates (name -> (source, spec)) whose `triggers.after` closes a cycle, among
    themselves or with `others` (name -> its `triggers.after`, e.g. the jobs stored; a
    candidate's own entry replaces its stored one). Each gets a field error at the entry that
    leads into the cycle, spelled out in run order; the rest make no cycle. A cycle among the
    others alone is not the candidates' doing and is not reported."""
    after = {name: list(upstreams) for name, upstreams in (others or {}).items()}
    after.update({name: list(spec.triggers.after) for name, (_src, spec) in candidates.items()})
    errors: dict[str, JobValidationError] = {}
    for name in sorted(candidates):
        if name in errors:
            continue
        cycle = find_cycle(after_edges(after), through=name)
        if cycle is None:
            continue
        text = f"makes a cycle: {spell(cycle)} (its jobs would trigger each other forever)"
        for before, job in zip(cycle, cycle[1:], strict=False):
            if job in candidates and job not in errors:
                source, spec = candidates[job]
                index = spec.triggers.after.index(before)
                loc = f"triggers.after.{index}"
                errors[job] = JobValidationError(source, [(loc, f"{before!r} {text}")])
                after.pop(job, None)  # refused: it no longer takes part
    return errors


def stored_after(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """{job: its triggers.after} of stored job rows (Database.list_jobs)."""
    return {row["name"]: list(row["spec"].get("triggers", {}).get("after", [])) for row in rows}


def folder_jobs(folder: Path, stored: Mapping[str, list[str]]) -> LoadReport | None:
    """The jobs folder as it is to be stored: each valid file's job, unless it closes a cycle
    of `triggers.after` with the others or the `stored` ones (the file wins for its own name);
    those and the invalid files are the errors. None when the folder does not exist."""
    if not folder.is_dir():
        return None
    report = load_jobs([folder])
    # the files' jobs among themselves were checked by load_jobs; with the stored ones
    # they must not close a cycle either
    files = {name: (str(path), spec) for name, (path, spec) in report.jobs.items()}
    for name, error in cycle_errors(files, stored).items():
        del report.jobs[name]
        report.errors.append(error)
    return report


ANNOUNCE_BATCH = 500  # JobUpserted per publish when a folder loads: within any group's bound


def announcements(
    stored: Sequence[tuple[str, dict[str, Any]]], done: Sequence[Upserted]
) -> list[list[JobUpserted]]:
    """The `config` messages of jobs just stored (Database.upsert_jobs), one list a publish."""
    messages = [
        JobUpserted(name=name, spec=spec, paused=row.paused)
        for (name, spec), row in zip(stored, done, strict=True)
    ]
    return [messages[at : at + ANNOUNCE_BATCH] for at in range(0, len(messages), ANNOUNCE_BATCH)]
