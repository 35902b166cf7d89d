"""Job files on disk: YAML -> JobSpec, with errors as `FILE: field.path: message`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tg_actors.config.dependencies import after_edges, find_cycle, spell
from tg_actors.errors import JobValidationError
from tg_actors.jobs import JobSpec, parse_job

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
    return parse_job(parse_yaml(text, str(path)), str(path))


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
            report.errors.append(
                JobValidationError(
                    str(path), [("name", f"job {spec.name!r} is already defined in {first}")]
                )
            )
            continue
        report.jobs[spec.name] = (path, spec)
    candidates = {name: (str(path), spec) for name, (path, spec) in report.jobs.items()}
    for name, error in cycle_errors(candidates).items():
        del report.jobs[name]
        report.errors.append(error)
    return report


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
