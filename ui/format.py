"""Pure formatting for the UI: API answers -> table rows, plot frames and status lines.

No Gradio here (tested in tests/unit/test_ui_format.py). Everything shown comes from the API,
which masks secrets; nothing here reads the environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import yaml

from tg_actors.errors import IllegalTransition, JobValidationError, NoCapacity, TGError
from tg_actors.runstate import TERMINAL, RunState, Trigger

NEW_JOB = "(new job)"
ALL = "(all)"
RUN_STATES = [state.value for state in RunState]
ENDED_STATES = {state.value for state in TERMINAL}

JOB_COLUMNS = [
    "job", "enabled", "paused", "schedule", "next run", "last state", "last finished", "last rows",
]  # fmt: skip
RUN_COLUMNS = [
    "run", "job", "state", "trigger", "attempt", "scheduled for", "started", "finished",
    "duration", "rows", "pages", "error",
]  # fmt: skip
RUN_FIELDS = [
    "run_id", "job", "state", "trigger", "attempt", "scheduled_for", "queued_at", "started_at",
    "finished_at", "rows_loaded", "pages", "error",
]  # fmt: skip
DETAIL_COLUMNS = ["field", "value"]
LOG_COLUMNS = ["time", "level", "message"]
COMMAND_COLUMNS = ["time", "job", "kind", "who", "outcome"]
NO_ANSWER = "(no answer yet)"
ERROR_COLUMNS = ["field", "message"]
TABLE_COLUMNS = ["column", "type"]
TABLES_COLUMNS = ["table", "rows", "columns"]
STATE_FRAME_COLUMNS = ["state", "runs"]
LOADED_FRAME_COLUMNS = ["finished_at", "job", "rows"]

JOB_TEMPLATE = """\
# A new job: fill in the source and destination, then Validate and Save.
name: my_job                 # ^[a-z][a-z0-9_]{0,62}$, unique
description: ""
enabled: true
schedule:                    # remove to run only when triggered (Run now, or after other jobs)
  interval: 1h               # or  cron: "*/15 * * * *"   or  at: 2026-12-01T00:00:00Z
  catchup: latest            # none | latest | all
  overlap: skip              # skip | queue | allow
priority: 50                 # 0..100, higher is dispatched first
timeout: 30m                 # per attempt
source:
  type: http
  url: https://api.example.com/items
  params: {}
  # auth: {type: bearer, token: "${API_TOKEN}"}   # secrets as ${ENV_VAR}, never the value
  #   or {type: login, url: https://api.example.com/login, body: {user: "${U}", password: "${P}"},
  #       token_path: "$.token"}   (also basic, api_key, oauth2_client_credentials,
  #       oauth2_refresh_token)
  # format: json               # json | jsonl | csv (gzip bodies are decoded)
  records: "$.data"          # JSONPath to the list of records
  paginate: {type: none}     # none | link_header | next_url | page | offset | cursor
  #   next_url: {path: "$.next"} or {header: Next-Page};  cursor: {path, param} or, for a
  #   POST body (GraphQL), {path, body_path: variables.after, has_more_path: "$...hasNextPage"}
  # rules:                   # first match wins: retry | skip | stop | fail
  #   - {status: 404, action: skip}
  #   - {status: 200, body_contains: "rate limit", action: retry}
  # expect_total: "$.total"  # or {header: X-Total-Count}: a full read must fetch that many
  # incremental: {cursor_field: updated_at, param: since, initial: "2024-01-01T00:00:00Z"}
  # for_each:                # one request chain per row; {column} in url/params/headers/body
  #   sql: "SELECT id AS customer_id FROM customers"   # or values: [{customer_id: 1}]
  #   include: [customer_id]
  # window: {start: "2024-01-01T00:00:00Z", step: 1d}  # {window_start} {window_end}
destination:
  table: my_table
  write: append              # append | replace | merge (merge needs primary_key)
"""


def cell(value: Any) -> Any:
    """A table cell: None as empty text, other values unchanged."""
    return "" if value is None else value


def when(iso: str | None) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM:SSZ' in UTC; empty for None; unparsable text as is."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def duration(started: str | None, finished: str | None) -> str:
    """Seconds between two ISO times ('12.3s', '4m 05s', '1h 02m'); empty if either is missing."""
    if not started or not finished:
        return ""
    try:
        begin = datetime.fromisoformat(started.replace("Z", "+00:00"))
        end = datetime.fromisoformat(finished.replace("Z", "+00:00"))
        seconds = (end - begin).total_seconds()
    except (ValueError, TypeError):
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def schedule_text(schedule: dict[str, Any] | None) -> str:
    if not schedule:  # runs only when triggered (or after other jobs)
        return Trigger.MANUAL.value
    for kind in ("cron", "interval", "at"):
        if schedule.get(kind):
            text = f"{kind} {schedule[kind]}"
            zone = schedule.get("timezone")
            return f"{text} ({zone})" if kind == "cron" and zone and zone != "UTC" else text
    return "?"


def job_rows(jobs: Iterable[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for job in jobs:
        last = job.get("last_run") or {}
        rows.append(
            [
                job["name"],
                job.get("enabled", True),
                job.get("paused", False),
                schedule_text(job.get("schedule")),
                when(job.get("next_run_at")),
                last.get("state", ""),
                when(last.get("finished_at")),
                cell(last.get("rows_loaded")),
            ]
        )
    return rows


def run_rows(runs: Iterable[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["run_id"],
            r["job"],
            r["state"],
            cell(r.get("trigger")),
            cell(r.get("attempt")),
            when(r.get("scheduled_for")),
            when(r.get("started_at")),
            when(r.get("finished_at")),
            duration(r.get("started_at"), r.get("finished_at")),
            r.get("rows_loaded") or 0,
            r.get("pages") or 0,
            (r.get("error") or "")[:200],
        ]
        for r in runs
    ]


def run_detail_rows(run: dict[str, Any] | None) -> list[list[Any]]:
    """(field, value) rows: the contract's fields first, then any extra ones; values as text."""
    if not run:
        return []
    fields = RUN_FIELDS + [k for k in run if k not in RUN_FIELDS and k != "checks"]
    rows = [[name, "" if run.get(name) is None else str(run.get(name))] for name in fields]
    return rows + check_rows(run.get("checks") or [])


def check_rows(checks: Iterable[dict[str, Any]]) -> list[list[Any]]:
    """A run's check results as (`check NAME`, `passed: VALUE` / `FAILED (fail|warn): VALUE`)."""
    out = []
    for check in checks:
        verdict = "passed" if check.get("passed") else f"FAILED ({check.get('on_fail')})"
        value = check.get("value")
        out.append([f"check {check.get('name')}", verdict + (f": {value}" if value else "")])
    return out


def shown_run(rows: Sequence[Sequence[Any]] | None) -> tuple[str, str]:
    """(run_id, state) of the run a detail table (run_detail_rows) shows; empty when none."""
    fields = {str(row[0]): str(row[1]) for row in rows or [] if len(row) >= 2}
    return fields.get("run_id", ""), fields.get("state", "")


def log_rows(logs: Iterable[dict[str, Any]] | None) -> list[list[Any]]:
    return [
        [when(line.get("ts")), cell(line.get("level")), cell(line.get("message"))]
        for line in logs or []
    ]


def command_rows(commands: Iterable[dict[str, Any]]) -> list[list[Any]]:
    """The audit log (UiApi.list_commands, newest first) as (time received, job, kind, who,
    outcome) rows, in the order given; a command not answered yet says so."""
    return [
        [
            when(c.get("received_at")),
            cell(c.get("job")),
            cell(c.get("kind")),
            cell(c.get("who")),
            NO_ANSWER if c.get("outcome") is None else str(c["outcome"])[:200],
        ]
        for c in commands
    ]


def error_rows(errors: Sequence[tuple[str, str]] | Sequence[Sequence[str]]) -> list[list[str]]:
    """Validation errors as (field path, message) rows; an error on the whole job shows '(job)'."""
    return [[str(loc) or "(job)", str(msg)] for loc, msg in errors]


def table_rows(tables: Iterable[dict[str, Any]]) -> list[list[Any]]:
    """The Data tab's overview: (table, rows, number of columns)."""
    return [[t["name"], cell(t.get("rows")), len(t.get("columns") or [])] for t in tables]


def column_rows(table: dict[str, Any] | None) -> list[list[str]]:
    if not table:
        return []
    return [[str(c["name"]), str(c["type"])] for c in table.get("columns", [])]


def sql_name(name: str) -> str:
    """`name` as a DuckDB identifier, quoted (a table may be named anything)."""
    return '"' + name.replace('"', '""') + '"'


def result_frame(answer: dict[str, Any] | None) -> pd.DataFrame:
    """A JSON answer of POST /api/sql {columns: [{name, type}], rows} as a DataFrame (values
    kept as the API sent them)."""
    if not answer:
        return pd.DataFrame()
    names = [str(c.get("name")) for c in answer.get("columns") or []]
    return pd.DataFrame([list(r) for r in answer.get("rows") or []], columns=names)


def state_frame(by_state: dict[str, int] | None) -> pd.DataFrame:
    """Runs per state, every known state (zero when absent) in lifecycle order, then others."""
    counts = dict(by_state or {})
    states = RUN_STATES + sorted(s for s in counts if s not in RUN_STATES)
    return pd.DataFrame(
        {"state": states, "runs": [int(counts.get(s, 0)) for s in states]},
        columns=STATE_FRAME_COLUMNS,
    )


def loaded_frame(loaded: Iterable[dict[str, Any]] | None) -> pd.DataFrame:
    """Rows loaded by succeeded runs over time: finished_at (UTC datetime), job, rows; sorted by
    time. Entries without a finish time are left out."""
    items = [x for x in loaded or [] if x.get("finished_at")]
    items.sort(key=lambda x: str(x["finished_at"]))
    return pd.DataFrame(
        {
            "finished_at": pd.to_datetime(
                [x["finished_at"] for x in items], utc=True, format="ISO8601"
            ),
            "job": pd.Series([str(x["job"]) for x in items], dtype="str"),
            "rows": pd.Series([int(x.get("rows") or 0) for x in items], dtype="int64"),
        },
        columns=LOADED_FRAME_COLUMNS,
    )


def plot_series(
    columns: Sequence[str] | None, data: Sequence[Sequence[Any]] | None, name: str
) -> list[str]:
    """The distinct values (sorted, as text) of column `name` in a plot's data."""
    if not columns or name not in columns:
        return []
    index = list(columns).index(name)
    return sorted({str(row[index]) for row in data or [] if len(row) > index})


def job_name_from_yaml(text: str) -> str | None:
    """The `name:` of a job's YAML text, or None when the text has no usable name."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return (name.strip() or None) if isinstance(name, str) else None


def describe_error(exc: BaseException) -> str:
    """A status line for an error the API raised."""
    if isinstance(exc, IllegalTransition):
        return f"Run {exc.run_id} already ended ({exc.current}): nothing to cancel."
    if isinstance(exc, JobValidationError):
        return f"Invalid job: {len(exc.errors)} error(s), see the table."
    if isinstance(exc, NoCapacity):
        return f"Not enough room in the cluster: {exc}. The engines are as they were."
    if isinstance(exc, TGError):
        return f"Error: {exc}"
    return f"Error ({type(exc).__name__}): {exc}"


def choices(names: Iterable[str], first: Sequence[str] = ()) -> list[str]:
    """Dropdown choices: `first` (e.g. NEW_JOB or ALL), then the names sorted."""
    return [*first, *sorted(set(names))]


def optional(value: str | None) -> str | None:
    """A filter dropdown's value: None for empty or ALL."""
    return None if not value or value == ALL else value
