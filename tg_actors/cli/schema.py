"""`tg schema [-o FILE]`: the job file's JSON Schema (tg_actors/jobschema.py), for editors.

Point the YAML language server at it with a first line `# yaml-language-server:
$schema=../job.schema.json` (the shipped jobs have it) and an editor completes and checks
job files as you type."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tg_actors.jobschema import schema_text


def cmd_schema(args: argparse.Namespace) -> int:
    text = schema_text()
    if args.output:
        target = Path(args.output)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"cannot write {target}: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {target}")
        return 0
    sys.stdout.write(text)
    return 0
