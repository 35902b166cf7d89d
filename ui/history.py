"""The Jobs tab's History: the audit log of commands (UiApi.list_commands) of the job picked,
or of every job when none is; refreshed by ui.app (job picked, the tab's actions, the live
pulses and the fallback timer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui import format as fmt
from ui.api import UiApi

HISTORY_LIMIT = 50


@dataclass
class HistoryView:
    table: gr.Dataframe
    caption: gr.Markdown

    @property
    def outputs(self) -> list[Any]:
        return [self.table, self.caption]


def history_view() -> HistoryView:
    """An accordion under the Jobs tab's tables (laid out in the current Blocks context)."""
    with gr.Accordion("History", open=False, elem_id="history"):
        caption = gr.Markdown(caption_text(None), elem_id="history-status")
        table = gr.Dataframe(
            headers=fmt.COMMAND_COLUMNS,
            label="Commands",
            interactive=False,
            wrap=True,
            elem_id="history-table",
        )
    return HistoryView(table, caption)


def caption_text(job: str | None) -> str:
    whose = f"job {job!r}" if job else "every job"
    return (
        f"What was asked of {whose} through the API and this UI, newest first (at most"
        f" {HISTORY_LIMIT}), and what came of it."
    )


async def load_history(api: UiApi, name: str | None) -> tuple[Any, str]:
    """(rows, caption) of the picked job's commands; on failure the rows stay, the caption
    says why."""
    job = fmt.optional(name)
    try:
        found = await api.list_commands(job=job, limit=HISTORY_LIMIT)
    except Exception as exc:
        return gr.skip(), f"History not refreshed: {fmt.describe_error(exc)}"
    return fmt.command_rows(found), caption_text(job)
