"""Job files on disk for tests: `write_job` puts `<configs>/jobs/<name>.yaml` where the
ConfigManager and `tg --configs` read it."""

from __future__ import annotations

from pathlib import Path


def write_job(configs: Path, name: str, text: str) -> Path:
    jobs = configs / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    path = jobs / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path
