"""The Runs tab: a live, filterable runs table; one run's fields and logs; Cancel run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui import format as fmt
from ui.api import UiApi
from ui.common import Loader, pick_first_cell

RUNS_LIMIT = 100
TAB = "runs"  # this tab's id in ui.app


@dataclass
class RunsView:
    job: gr.Dropdown
    state: gr.Dropdown
    runs: gr.Dataframe
    run_id: gr.Textbox
    detail: gr.Dataframe
    logs: gr.Dataframe
    status: gr.Markdown
    loader: Loader  # fills the runs table when the tab is shown


def runs_tab(
    api: UiApi, timer: gr.Timer, pulse: gr.State | None = None, shown_tab: gr.State | None = None
) -> RunsView:
    """The tab's layout and events. Live: each change of `pulse` (ui.live) re-reads the table
    and the run shown while `shown_tab` is "runs"; `timer` (on while the tab shows and the
    pulses do not come) does the same every 2 s."""
    with gr.Row():
        job = gr.Dropdown(
            label="Job",
            choices=[fmt.ALL],
            value=fmt.ALL,
            allow_custom_value=True,
            elem_id="runs-job",
        )
        state = gr.Dropdown(
            label="State",
            choices=[fmt.ALL, *fmt.RUN_STATES],
            value=fmt.ALL,
            elem_id="runs-state",
        )
    runs = gr.Dataframe(
        headers=fmt.RUN_COLUMNS,
        label="Runs",
        interactive=False,
        elem_id="runs-table",
    )
    with gr.Row():
        run_id = gr.Textbox(label="Run id", placeholder="a run id", elem_id="run-id", scale=3)
        show = gr.Button("Show run", elem_id="show-run")
        cancel = gr.Button("Cancel run", variant="stop", elem_id="cancel-run")
    status = gr.Markdown(
        f"Newest first (at most {RUNS_LIMIT}); click a run's row for its detail and logs.",
        elem_id="runs-status",
    )
    with gr.Row():
        detail = gr.Dataframe(
            headers=fmt.DETAIL_COLUMNS,
            label="Run",
            interactive=False,
            type="array",
            elem_id="run-detail",
            scale=1,
        )
        logs = gr.Dataframe(
            headers=fmt.LOG_COLUMNS,
            label="Logs",
            interactive=False,
            wrap=True,
            elem_id="run-logs",
            scale=2,
        )

    act = RunsActions(api)

    shown = [detail, logs, status]
    filters = [job, state]
    gr.on([job.change, state.change], act.list_runs, inputs=filters, outputs=runs, api_name="runs")
    timer.tick(
        act.live_runs, inputs=filters, outputs=[runs, status], api_visibility="private"
    ).then(act.follow, inputs=[run_id, detail], outputs=[detail, logs], api_visibility="private")
    if pulse is not None and shown_tab is not None:
        pulse.change(
            act.on_pulse,
            inputs=[shown_tab, *filters, run_id, detail],
            outputs=[runs, status, detail, logs],
            api_visibility="private",
            show_progress="hidden",
        )
    show.click(act.run_detail, inputs=run_id, outputs=shown, api_name="run_detail")
    run_id.submit(act.run_detail, inputs=run_id, outputs=shown, api_visibility="private")
    runs.select(pick_first_cell, outputs=run_id, api_visibility="private").then(
        act.run_detail, inputs=run_id, outputs=shown, api_visibility="private"
    )
    cancel.click(act.cancel, inputs=run_id, outputs=status, api_name="cancel_run").then(
        act.list_runs, inputs=filters, outputs=runs, api_visibility="private"
    )
    loader = Loader(act.live_runs, [runs, status], filters)
    return RunsView(job, state, runs, run_id, detail, logs, status, loader)


class RunsActions:
    """The Runs tab's handlers; errors become status lines."""

    def __init__(self, api: UiApi) -> None:
        self.api = api

    async def list_runs(self, job_name: str | None, state_name: str | None) -> list[list[Any]]:
        found = await self.api.list_runs(
            job=fmt.optional(job_name), state=fmt.optional(state_name), limit=RUNS_LIMIT
        )
        return fmt.run_rows(found)

    async def live_runs(self, job_name: str | None, state_name: str | None) -> tuple[Any, Any]:
        """Timer and tab select: the runs table; on failure keep it and say why."""
        try:
            return await self.list_runs(job_name, state_name), gr.skip()
        except Exception as exc:
            return gr.skip(), f"Refresh failed: {fmt.describe_error(exc)}"

    async def on_pulse(
        self,
        tab: str | None,
        job_name: str | None,
        state_name: str | None,
        rid: str | None,
        shown: list[list[Any]] | None,
    ) -> tuple[Any, Any, Any, Any]:
        """A live pulse: while this tab shows, (runs table, status, run fields, run logs)
        re-read as the timer would; otherwise nothing."""
        if tab != TAB:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        table, said = await self.live_runs(job_name, state_name)
        fields, lines = await self.follow(rid, shown)
        return table, said, fields, lines

    async def run_detail(self, rid: str | None) -> tuple[list[list[Any]], list[list[Any]], str]:
        rid = (rid or "").strip()
        if not rid:
            return [], [], "Enter a run id, or click a run in the table."
        try:
            run = await self.api.get_run(rid)
            logs_found = await self.api.run_logs(rid) if run else None
        except Exception as exc:
            return [], [], fmt.describe_error(exc)
        if run is None:
            return [], [], f"No run with id {rid!r}."
        return fmt.run_detail_rows(run), fmt.log_rows(logs_found), f"Run {rid}: {run['state']}."

    async def follow(self, rid: str | None, shown: list[list[Any]] | None) -> Any:
        """Timer: re-read the shown run (fields and logs) until it has ended."""
        shown_id, shown_state = fmt.shown_run(shown)
        rid = (rid or "").strip()
        if not rid or rid != shown_id or shown_state in fmt.ENDED_STATES:
            return gr.skip(), gr.skip()
        fields, lines, _ = await self.run_detail(rid)
        return (fields, lines) if fields else (gr.skip(), gr.skip())

    async def cancel(self, rid: str | None) -> str:
        rid = (rid or "").strip()
        if not rid:
            return "Pick a run first."
        try:
            new_state = await self.api.cancel(rid)
        except Exception as exc:
            return fmt.describe_error(exc)
        return f"Run {rid}: cancel requested ({new_state})."
