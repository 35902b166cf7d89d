"""`tg init [DIR]`: a new project folder to start from: `configs/jobs/` with one commented
example job (it reads the demo API that `tg up` serves, so it runs offline) and
`configs/job.schema.json`, which the job names on its first line for editors. Nothing is
overwritten: an existing file stops it (exit 1), `--force` replaces them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tg_actors.jobschema import schema_text

EXAMPLE = """\
# yaml-language-server: $schema=../job.schema.json
# Your first job: `tg validate` checks it, `tg up` runs it on its schedule (and serves the
# demo API it reads at http://127.0.0.1:8000/demo), `tg run my_orders` runs it once.
# Every field: `tg schema`, or let your editor complete them from configs/job.schema.json.
name: my_orders
description: "Orders from the demo shop, every 10 minutes, incrementally"
schedule:
  interval: 10m
source:
  url: http://127.0.0.1:8000/demo/orders
  params: {per_page: 500}
  # auth: {type: bearer, token: "${API_TOKEN}"}   # secrets as ${ENV_VAR}, never the value
  records: "$.data"            # JSONPath to the list of records
  paginate: {type: page}       # none | link_header | next_url | page | offset | cursor
  incremental:                 # ask only for what changed since the last run
    cursor_field: updated_at
    param: updated_since
    initial: "2024-01-01T00:00:00Z"
destination:
  table: my_orders
  write: merge                 # append | replace | merge (merge needs primary_key)
  primary_key: [id]
"""


def files(root: Path) -> dict[Path, str]:
    """What `tg init` writes under `root`."""
    configs = root / "configs"
    return {
        configs / "jobs" / "my_orders.yaml": EXAMPLE,
        configs / "job.schema.json": schema_text(),
    }


def cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    planned = files(root)
    there = [path for path in planned if path.exists()]
    if there and not args.force:
        for path in there:
            print(f"{path} exists: nothing written (--force replaces it)", file=sys.stderr)
        return 1
    try:
        for path, text in planned.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"cannot write into {root}: {exc}", file=sys.stderr)
        return 1
    for path in planned:
        print(f"wrote {path}")
    print(f"next: tg validate {root / 'configs' / 'jobs'}; tg up --configs {root / 'configs'}")
    return 0
