"""Run states and trigger kinds are spelled once, in tg_actors/runstate.py.

Every other module of tg_actors/, serve/ and ui/ uses `RunState`, `Trigger`, `after_trigger`
and the groups built from them; SQL takes them as parameters or as constants rendered from the
enums (store/schema.py). The scan reads the string constants of each module's syntax tree
(docstrings and comments are not string constants, so prose may name states freely) and fails
on a state or trigger name typed by hand: the whole string (`"succeeded"`), a SQL literal
inside one (`state = 'succeeded'`), or the `after:` prefix of a trigger.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from serve.events import event_data
from tg_actors.messages import RunStateChanged, TriggerRun, from_wire, to_wire
from tg_actors.runstate import (
    AFTER_PREFIX,
    TICK_TRIGGERS,
    RunState,
    Trigger,
    after_trigger,
    upstream_of,
)
from tg_actors.store.schema import OPEN_SQL, OPEN_STATES, RUN_STATES, TICK_SQL, sql_strings

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("tg_actors", "serve", "ui")
HOME = ROOT / "tg_actors" / "runstate.py"

STATES = {state.value for state in RunState}
TRIGGERS = {trigger.value for trigger in Trigger}
NAMES = STATES | TRIGGERS
# names that are also field names: a job's `schedule`, the Scheduler status' `running` and
# `queued` counts. As a key (dict key, subscript, .get) or a column label they are fields.
FIELDS = {"schedule", "running", "queued"}
_SQL_LITERAL = re.compile(r"'(" + "|".join(sorted(NAMES)) + r")'|'" + re.escape(AFTER_PREFIX))


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are docstrings (module, class, function, attribute)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for stmt in body:  # the first statement, and every string statement after another
            if (
                isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ):
                found.add(id(stmt.value))
    return found


def _field_positions(tree: ast.AST) -> set[int]:
    """ids of string constants used as a key: dict keys, subscripts, `.get(...)`'s first
    argument, and the entries of a `*_COLUMNS` list (table headers)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            found.update(id(k) for k in node.keys if k is not None)
        elif isinstance(node, ast.Subscript):
            found.add(id(node.slice))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
        ):
            found.add(id(node.args[0]))
        elif (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id.endswith("_COLUMNS") for t in node.targets)
            and isinstance(node.value, ast.List | ast.Tuple)
        ):
            found.update(id(e) for e in node.value.elts)
    return found


def hand_spelled(source: str, filename: str = "<source>") -> list[str]:
    """`line: 'text'` for each string constant that spells a state or trigger by hand."""
    tree = ast.parse(source, filename)
    skip, keys = _docstrings(tree), _field_positions(tree)
    # a Gradio endpoint or element (`api_name="refresh"`, `elem_id=`) names a button
    skip |= {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and node.arg in ("api_name", "elem_id")
    }
    # and a CLI command's name (`app.command("backfill")`) names a command
    skip |= {
        id(node.args[0])
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("add_parser", "command")
        and node.args
    }
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        text = node.value
        if id(node) in skip:
            continue
        whole = text in NAMES and not (text in FIELDS and id(node) in keys)
        if whole or text.startswith(AFTER_PREFIX) or _SQL_LITERAL.search(text):
            problems.append(f"{filename}:{node.lineno}: {text!r}")
    return problems


def _modules() -> list[Path]:
    files = [p for d in SCANNED for p in sorted((ROOT / d).rglob("*.py"))]
    return [p for p in files if p != HOME]


def test_no_state_or_trigger_is_spelled_by_hand() -> None:
    modules = _modules()
    assert len(modules) > 50  # the scan sees the code base, not an empty folder
    problems = [
        problem
        for path in modules
        for problem in hand_spelled(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert problems == [], "use RunState / Trigger / after_trigger (tg_actors/runstate.py)"


@pytest.mark.parametrize(
    "source",
    [
        'state = "succeeded"',
        'if run["state"] == "failed": pass',
        'level = {"failed": "ERROR"}',
        'f(trigger="manual")',
        'TICKS = ("schedule", "catchup")',
        'trigger = f"after:{job}"',
        "SQL = \"UPDATE tg.runs SET state = 'cancelled' WHERE run_id = ?\"",
        "SQL = \"SELECT 1 FROM tg.runs WHERE trigger IN ('schedule', 'catchup')\"",
        "SQL = f\"SELECT 1 FROM {t} WHERE state IN ('queued', 'running')\"",
        'status = "running"',
        'def f(x: str = "queued") -> None: ...',
    ],
)
def test_the_scan_catches(source: str) -> None:
    assert hand_spelled(source)


@pytest.mark.parametrize(
    "source",
    [
        '"""A docstring may say queued, `succeeded` and "manual"."""',
        'def f():\n    """Runs end `cancelled`."""\n',
        'x = 1  # a comment may say "failed"',
        'spec.get("schedule")',
        'status = {"running": 1, "queued": 2}',
        'print(answer["running"])',
        'JOB_COLUMNS = ["job", "schedule"]',
        'log.info("skipped invalid job file")',
        "state = RunState.SUCCEEDED",
    ],
)
def test_the_scan_lets_pass(source: str) -> None:
    assert hand_spelled(source) == []


def test_todays_sql_spelling_would_fail() -> None:
    """Two spellings this vocabulary replaced (ui/format.py, store/duckdb.py): 54 hits in all
    on the code before it."""
    before = """
RUN_STATES = ["queued", "running", "retrying", "succeeded", "failed", "cancelled", "skipped"]
WM = "SELECT max(scheduled_for) FROM tg.runs WHERE job = ? AND trigger IN ('schedule', 'catchup')"
"""
    assert len(hand_spelled(before)) == 8


# -- the vocabulary itself ---------------------------------------------------------------------


def test_trigger_values_are_the_contract_names() -> None:
    assert [t.value for t in Trigger] == ["schedule", "catchup", "manual", "backfill", "refresh"]
    assert TICK_TRIGGERS == (Trigger.SCHEDULE, Trigger.CATCHUP)
    assert all(isinstance(t, str) for t in Trigger)


@pytest.mark.parametrize("job", ["customers", "a", "orders_2024"])
def test_after_trigger_round_trips(job: str) -> None:
    trigger = after_trigger(job)
    assert trigger == f"after:{job}"  # CONTRACT §4
    assert upstream_of(trigger) == job


@pytest.mark.parametrize("trigger", ["schedule", "catchup", "manual", "after:", "after", "x"])
def test_upstream_of_other_triggers_is_none(trigger: str) -> None:
    assert upstream_of(trigger) is None


def test_sql_constants_are_rendered_from_the_enums() -> None:
    assert RUN_STATES == tuple(RunState)
    assert OPEN_STATES == (RunState.QUEUED, RunState.RUNNING, RunState.RETRYING)
    assert OPEN_SQL == "'queued', 'running', 'retrying'"
    assert TICK_SQL == "'schedule', 'catchup'"
    with pytest.raises(ValueError):
        sql_strings(["it's"])


def test_state_changed_carries_run_states_and_keeps_the_wire_strings() -> None:
    message = RunStateChanged(
        run_id="r1", job="orders", state="retrying", previous="running", trigger="after:a"
    )
    assert message.state is RunState.RETRYING and message.previous is RunState.RUNNING
    wire = to_wire(message)
    assert (wire["state"], wire["previous"], wire["trigger"]) == ("retrying", "running", "after:a")
    assert from_wire(wire) == message
    data = event_data(message)  # what /api/events sends
    assert json.loads(json.dumps(data))["state"] == "retrying"
    assert type(data["state"]) is str and type(data["previous"]) is str
    assert type(data["trigger"]) is str
    with pytest.raises(ValueError):
        RunStateChanged(run_id="r1", job="orders", state="done")


def test_message_trigger_defaults_serialise_as_plain_strings() -> None:
    assert to_wire(TriggerRun(run_id="r", job="j", spec={}))["trigger"] == "schedule"
    changed = RunStateChanged(run_id="r", job="j", state=RunState.QUEUED)
    assert json.dumps(to_wire(changed)["trigger"]) == '"schedule"'
    assert event_data(changed)["previous"] is None
