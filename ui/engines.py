"""The Engines tab: where the SyncEngine actors run and what they hold, and scaling them at
run time (the UI's side of GET and PUT /api/engines)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from tg_actors.names import MAX_ENGINES
from ui import engine_format as efmt
from ui import format as fmt
from ui.api import UiApi
from ui.common import Loader


def engines_tab(api: UiApi, timer: gr.Timer) -> Loader:
    """The tab's layout and events; `timer` (active while the tab shows) keeps the table live.
    Returns what fills the tab when it is shown (the engine count input included)."""
    summary = gr.Markdown("", elem_id="engines-summary")
    table = gr.Dataframe(
        headers=efmt.ENGINE_COLUMNS,
        label="Engines",
        interactive=False,
        wrap=True,
        elem_id="engines-table",
    )
    with gr.Row():
        # no minimum/maximum here: Gradio would refuse such a value with a pop-up before the
        # handler runs; EnginesActions.scale says what is wrong in the status line instead
        count = gr.Number(
            label=f"Engines (1 to {MAX_ENGINES})",
            value=None,
            precision=0,
            elem_id="engines-count",
        )
        grace = gr.Number(
            label="Grace (s)",
            value=None,
            info="how long a removed engine's runs may take to end; empty: the server's default",
            elem_id="engines-grace",
        )
        scale = gr.Button("Scale", variant="primary", elem_id="engines-scale")
        refresh = gr.Button("Refresh", elem_id="engines-refresh")
    status = gr.Markdown(
        "Set how many engines to run and Scale: new engines join the work queue; removed ones"
        " finish their runs first (up to the grace), the rest are retried on the other engines.",
        elem_id="engines-status",
    )

    act = EnginesActions(api)
    shown = [summary, table, count, status]
    refresh.click(act.load, outputs=shown, api_name="engines")
    timer.tick(act.live, outputs=[summary, table, status], api_visibility="private")
    scale.click(act.scale, inputs=[count, grace], outputs=shown, api_name="scale_engines")
    return Loader(act.load, shown)


class EnginesActions:
    """The Engines tab's handlers; errors become status lines."""

    def __init__(self, api: UiApi) -> None:
        self.api = api

    async def live(self) -> tuple[Any, Any, Any]:
        """Timer: summary and table; on failure keep them and say why."""
        try:
            found = await self.api.engines()
        except Exception as exc:
            return gr.skip(), gr.skip(), f"Refresh failed: {fmt.describe_error(exc)}"
        return efmt.engine_summary(found), efmt.engine_rows(found.get("engines") or []), gr.skip()

    async def load(self) -> tuple[Any, Any, Any, Any]:
        """Tab select and Refresh: summary, table, and the count input set to the engines now."""
        try:
            found = await self.api.engines()
        except Exception as exc:
            failed = f"Refresh failed: {fmt.describe_error(exc)}"
            return gr.skip(), gr.skip(), gr.skip(), failed
        rows = efmt.engine_rows(found.get("engines") or [])
        return efmt.engine_summary(found), rows, found.get("count"), gr.skip()

    async def scale(self, count: float | None, grace: float | None) -> tuple[Any, Any, Any, Any]:
        """Scale to `count` engines: the new summary, table and count, and what changed."""
        try:
            wanted, seconds = efmt.scale_request(count, grace)
        except ValueError as exc:
            return gr.skip(), gr.skip(), gr.skip(), str(exc)
        try:
            done = await self.api.scale_engines(wanted, seconds)
        except Exception as exc:
            return gr.skip(), gr.skip(), gr.skip(), fmt.describe_error(exc)
        rows = efmt.engine_rows(done.get("engines") or [])
        return efmt.engine_summary(done), rows, done.get("count"), efmt.scale_outcome(done)
