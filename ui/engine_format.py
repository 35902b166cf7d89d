"""What the Engines tab shows: table rows, the summary line, the outcome of a scale, and the
checks on what a user typed (the same bounds as PUT /api/engines)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from tg_actors.names import MAX_ENGINES
from ui.format import cell

ENGINE_COLUMNS = [
    "engine", "state", "node ip", "node", "pid", "slots", "runs in hand", "runs done",
    "current runs",
]  # fmt: skip
MAX_GRACE_SECONDS = 86_400  # as PUT /api/engines allows
NODE_ID_CHARS = 8


def plural(count: int, word: str) -> str:
    """'1 engine', '3 engines'."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def engine_rows(engines: Iterable[dict[str, Any]]) -> list[list[Any]]:
    """The Engines tab's table (ENGINE_COLUMNS). An engine that did not answer shows its state
    with the reason, and no node, slots or runs."""
    rows = []
    for e in engines:
        state = str(e.get("state") or "?")
        answered = state != "unavailable"
        current = [str(run_id) for run_id in e.get("current_runs") or []]
        rows.append(
            [
                e.get("name") or e.get("engine") or "?",
                f"{state} ({e['error']})" if e.get("error") else state,
                cell(e.get("node_ip")),
                str(e.get("node_id") or "")[:NODE_ID_CHARS],
                cell(e.get("pid")),
                cell(e.get("slots")),
                len(current) if answered else "",
                cell(e.get("runs_done")),
                ", ".join(current),
            ]
        )
    return rows


def engine_summary(answer: dict[str, Any] | None) -> str:
    """'3 engines on 2 nodes · capacity 24 runs at once · 5 running · 2 queued', then how many
    are draining or unavailable, if any."""
    answer = answer or {}
    states = Counter(str(e.get("state")) for e in answer.get("engines") or [])
    count, nodes = int(answer.get("count") or 0), int(answer.get("nodes") or 0)
    parts = [
        f"{plural(count, 'engine')} on {plural(nodes, 'node')}",
        f"capacity {plural(int(answer.get('capacity') or 0), 'run')} at once",
        f"{int(answer.get('running') or 0)} running",
        f"{int(answer.get('queue_depth') or 0)} queued",
    ]
    parts += [f"{states[s]} {s}" for s in ("draining", "unavailable") if states[s]]
    return " · ".join(parts)


def scale_outcome(answer: dict[str, Any]) -> str:
    """A scale answer as a status line: what was added, removed and interrupted."""
    added = [str(x) for x in answer.get("added") or []]
    removed = [str(x) for x in answer.get("removed") or []]
    interrupted = [str(x) for x in answer.get("interrupted") or []]
    count = plural(int(answer.get("count") or 0), "engine")
    if not added and not removed:
        return f"Already {count}: nothing changed."
    parts = [f"Added {plural(len(added), 'engine')}: {', '.join(added)}."] if added else []
    if removed:
        parts.append(f"Removed {plural(len(removed), 'engine')}: {', '.join(removed)}.")
        parts.append(
            f"{plural(len(interrupted), 'run')} interrupted, retried on the other engines: "
            f"{', '.join(interrupted)}."
            if interrupted
            else "No run was interrupted."
        )
    return " ".join([*parts, f"Now {count}."])


def scale_request(count: float | None, grace: float | None) -> tuple[int, float | None]:
    """The Scale form's (engines, grace seconds) checked as PUT /api/engines checks them;
    ValueError with a status line when they are not usable. No grace: the server's default."""
    if count is None:
        raise ValueError(f"Enter how many engines to run (1 to {MAX_ENGINES}).")
    if not 1 <= count <= MAX_ENGINES or count != int(count):  # NaN and inf fail the first
        raise ValueError(f"Engines must be a whole number from 1 to {MAX_ENGINES}, not {count:g}.")
    if grace is not None and not 0 <= grace <= MAX_GRACE_SECONDS:
        raise ValueError(
            f"Grace must be 0 to {MAX_GRACE_SECONDS} seconds, or empty, not {grace:g}."
        )
    return int(count), None if grace is None else float(grace)
