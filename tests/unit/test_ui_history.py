"""The Jobs tab's History, over a stand-in API: the audit log's rows (ui.format.command_rows)
and ui.history.load_history (which job it asks for, what a failure shows)."""

from __future__ import annotations

from typing import Any

import pytest

from tg_actors.errors import TGError
from ui import format as fmt
from ui import history

COMMANDS: list[dict[str, Any]] = [
    {
        "command_id": "c3", "kind": "trigger", "job": "orders", "who": "ui",
        "received_at": "2024-05-01T10:00:02.5+00:00", "answered_at": None, "outcome": None,
    },
    {
        "command_id": "c2", "kind": "pause", "job": "orders", "who": "api",
        "received_at": "2024-05-01T12:00:01+02:00", "answered_at": "2024-05-01T10:00:01.1Z",
        "outcome": "paused",
    },
    {
        "command_id": "c1", "kind": "scale", "job": None, "who": "api",
        "received_at": "2024-05-01T09:59:00Z", "answered_at": "2024-05-01T09:59:01Z",
        "outcome": "refused: " + "x" * 300,
    },
]  # fmt: skip


def test_history_rows_say_when_what_who_and_what_came_of_it() -> None:
    rows = fmt.command_rows(COMMANDS)
    assert rows[:2] == [
        ["2024-05-01 10:00:02Z", "orders", "trigger", "ui", fmt.NO_ANSWER],
        ["2024-05-01 10:00:01Z", "orders", "pause", "api", "paused"],
    ]
    time, job, kind, who, outcome = rows[2]
    assert (time, job, kind, who) == ("2024-05-01 09:59:00Z", "", "scale", "api")
    assert outcome.startswith("refused: x") and len(outcome) == 200  # long outcomes are cut
    assert len(fmt.COMMAND_COLUMNS) == len(rows[0]) and fmt.command_rows([]) == []


def test_an_empty_outcome_is_an_answer_and_missing_fields_are_blank() -> None:
    rows = fmt.command_rows([{"kind": "resume", "received_at": None, "outcome": ""}])
    assert rows == [["", "", "resume", "", ""]]


class CommandsApi:
    def __init__(self, found: list[dict[str, Any]] | Exception) -> None:
        self.found = found
        self.asked: list[tuple[str | None, int]] = []

    async def list_commands(self, job: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        self.asked.append((job, limit))
        if isinstance(self.found, Exception):
            raise self.found
        return [c for c in self.found if job is None or c["job"] == job]


@pytest.mark.parametrize(("picked", "asked"), [(None, None), ("", None), ("orders", "orders")])
async def test_history_asks_for_the_picked_job_or_every_job(
    picked: str | None, asked: str | None
) -> None:
    api = CommandsApi(COMMANDS)
    rows, caption = await history.load_history(api, picked)  # type: ignore[arg-type]
    assert api.asked == [(asked, history.HISTORY_LIMIT)]
    assert len(rows) == (2 if asked else 3)
    assert ("job 'orders'" if asked else "every job") in caption and "newest first" in caption


async def test_history_that_cannot_be_read_keeps_its_rows_and_says_why() -> None:
    rows, caption = await history.load_history(CommandsApi(TGError("db down")), "orders")  # type: ignore[arg-type]
    assert rows == {"__type__": "update"}  # gr.skip(): the table is left as it is
    assert caption == "History not refreshed: Error: db down"
