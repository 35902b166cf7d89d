"""Small pieces the tabs share: what a tab loads when shown, and picking a row."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr


@dataclass
class Loader:
    """What a tab fills itself with when it is shown: `fn(*inputs)` -> values of `outputs`."""

    fn: Callable[..., Awaitable[Any]]
    outputs: list[Any]
    inputs: list[Any] = field(default_factory=list)
    then: Loader | None = None  # a step to run after this one

    def chain(self, event: Any) -> None:
        """Run this loader (and its `then`) after `event`, privately."""
        step: Loader | None = self
        while step is not None:
            event = event.then(
                step.fn, inputs=step.inputs, outputs=step.outputs, api_visibility="private"
            )
            step = step.then


def pick_first_cell(evt: gr.SelectData) -> Any:
    """A table row's select event -> its first cell (a job, run or table name)."""
    row = evt.row_value
    return row[0] if row else gr.skip()
