"""A stand-in StateManager for the ErrorHandler's tests: what it needs, in memory."""

from __future__ import annotations

from typing import Any

from tg_actors.runstate import RunState
from tg_actors.scheduler.states import TrackedRun


class FakeStates:
    """What ErrorHandler needs of a StateManager: `move` records its calls and, as the real
    one does, moves the tracked run."""

    def __init__(self, *runs: TrackedRun) -> None:
        self.runs = {run.run_id: run for run in runs}
        self.moves: list[tuple[str, RunState, dict[str, Any]]] = []

    async def move(self, run_id: str, target: RunState, **fields: Any) -> TrackedRun:
        self.moves.append((run_id, target, fields))
        run = self.runs[run_id]
        run.state = target
        return run

    def get(self, run_id: str) -> TrackedRun | None:
        return self.runs.get(run_id)
