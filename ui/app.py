"""Gradio UI: Jobs, Editor, Runs, Data, SQL, Charts and Engines tabs over the API layer
(ui.api.UiApi, implemented by serve.service.ApiService), never the actors directly.

Client endpoints (gradio_client `api_name`s): refresh, run_now, pause, resume, history,
load_job, validate, save, delete_job, runs, run_detail, cancel_run, preview, sql, sql_csv,
sql_parquet, sql_tables, stats, engines, scale_engines. Timers, row clicks, live pulses and
chained refreshes are private. While a page is open its Jobs and Runs tabs follow the
`status` topic (ui.live): a run's change shows within a second, and their 2 s timers run only
when that stream fails or ends. Each other tab's timer runs only while that tab is shown.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui import format as fmt
from ui import live
from ui.api import UiApi
from ui.common import Loader
from ui.data import charts_tab, data_tab
from ui.engines import engines_tab
from ui.history import load_history
from ui.jobs import EditorView, JobsView, editor_tab, jobs_tab, live_tables, refresh_tables
from ui.runs import RunsView, runs_tab
from ui.sql import sql_tab

__all__ = ["UiApi", "build_ui"]

LIVE_SECONDS = live.FALLBACK_SECONDS
CHARTS_SECONDS = 10.0
ENGINES_SECONDS = 5.0  # each refresh asks every engine
PRIVATE: dict[str, Any] = {"api_visibility": "private"}
QUIET: dict[str, Any] = {**PRIVATE, "show_progress": "hidden"}  # no spinner on what it fills


@dataclass
class Liveness:
    """A page's live state: the pulse counter (ui.live), whether the status stream is
    connected, the tab shown, and each tab's timer by tab id."""

    pulse: gr.State
    following: gr.State
    shown_tab: gr.State
    timers: dict[str, gr.Timer]

    def switches(self, tab: str, following: bool) -> list[gr.Timer]:
        """Every timer's update for `tab` shown (ui.live.timers_on)."""
        on = live.timers_on(tab, following, self.timers)
        return [gr.Timer(active=name in on) for name in self.timers]


def build_ui(api: UiApi) -> gr.Blocks:
    ui = gr.Blocks(title="turbo-giggle")
    with ui:
        gr.Markdown("# turbo-giggle\nHTTP APIs synced into DuckDB on a schedule.")
        names = gr.State([])  # job names the dropdowns offer now
        liveness = Liveness(
            pulse=gr.State(0),
            following=gr.State(False),
            shown_tab=gr.State("jobs"),
            timers={
                "jobs": gr.Timer(LIVE_SECONDS, active=True),  # off once the stream connects
                "runs": gr.Timer(LIVE_SECONDS, active=False),
                "charts": gr.Timer(CHARTS_SECONDS, active=False),
                "engines": gr.Timer(ENGINES_SECONDS, active=False),
            },
        )
        timer = liveness.timers
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Jobs", id="jobs", elem_id="tab-jobs") as jobs_page:
                jobs = jobs_tab(api)
            with gr.Tab("Editor", id="editor", elem_id="tab-editor") as editor_page:
                editor = editor_tab(api)
            with gr.Tab("Runs", id="runs", elem_id="tab-runs") as runs_page:
                runs = runs_tab(api, timer["runs"], liveness.pulse, liveness.shown_tab)
            with gr.Tab("Data", id="data", elem_id="tab-data") as data_page:
                data = data_tab(api)
            with gr.Tab("SQL", id="sql", elem_id="tab-sql") as sql_page:
                sql = sql_tab(api)
            with gr.Tab("Charts", id="charts", elem_id="tab-charts") as charts_page:
                charts = charts_tab(api, timer["charts"])
            with gr.Tab("Engines", id="engines", elem_id="tab-engines") as engines_page:
                engines = engines_tab(api, timer["engines"])

        wire_jobs(api, ui, liveness, names, jobs, editor, runs)
        wire_live(api, ui, liveness, jobs, runs)
        show(liveness, jobs_page, "jobs")
        show(liveness, editor_page, "editor")
        show(liveness, runs_page, "runs", runs.loader)
        show(liveness, data_page, "data", data)
        show(liveness, sql_page, "sql", sql)
        show(liveness, charts_page, "charts", charts)
        show(liveness, engines_page, "engines", engines)
    ui.queue(default_concurrency_limit=None)
    return ui


def wire_jobs(
    api: UiApi,
    ui: gr.Blocks,
    liveness: Liveness,
    names: gr.State,
    jobs: JobsView,
    editor: EditorView,
    runs: RunsView,
) -> None:
    """What re-reads the Jobs tab (tables and history): Refresh, page load, live pulses, the
    fallback timer and the actions; each then syncs the job dropdowns of every tab."""

    async def refresh() -> tuple[list[list[Any]], list[list[Any]]]:
        return await refresh_tables(api)

    async def tick(name: str | None) -> tuple[Any, Any, Any, Any, Any]:
        """Load, pulse and timer: both tables and the history; on failure keep them and say
        why in the status line."""
        return await live_tables(api, name)

    async def history(name: str | None) -> tuple[Any, str]:
        return await load_history(api, name)

    def sync_names(known: list[str] | None, shown: list[list[Any]] | None) -> Any:
        """The job dropdowns' choices, from the jobs table; untouched while unchanged."""
        now = fmt.choices(str(row[0]) for row in shown or [] if row and row[0])
        if now == (known or []):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return (
            now,
            gr.Dropdown(choices=now),
            gr.Dropdown(choices=fmt.choices(now, [fmt.NEW_JOB])),
            gr.Dropdown(choices=fmt.choices(now, [fmt.ALL])),
        )

    tables = [jobs.jobs, jobs.runs]
    viewed = [*tables, *jobs.history.outputs, jobs.status]
    again = {"fn": history, "inputs": jobs.job, "outputs": jobs.history.outputs, **PRIVATE}
    sync: dict[str, Any] = {
        "fn": sync_names,
        "inputs": [names, jobs.jobs],
        "outputs": [names, jobs.job, editor.job, runs.job],
        **PRIVATE,
    }
    refreshed = jobs.refresh.click(refresh, outputs=tables, api_name="refresh")
    refreshed.then(**again)
    refreshed.then(**sync)
    for event in (
        liveness.timers["jobs"].tick(tick, inputs=jobs.job, outputs=viewed, **PRIVATE),
        ui.load(tick, inputs=jobs.job, outputs=viewed, **PRIVATE),
        liveness.pulse.change(tick, inputs=jobs.job, outputs=viewed, **QUIET),
    ):
        event.then(**sync)
    for action in (*jobs.actions, *editor.saved):
        action.then(**again)
        action.then(refresh, outputs=tables, **PRIVATE).then(**sync)


def wire_live(
    api: UiApi, ui: gr.Blocks, liveness: Liveness, jobs: JobsView, runs: RunsView
) -> None:
    """Page load starts the page's status stream (ui.live.follow_status), for as long as the
    page is open; when it ends, the shown tab's timer takes over."""

    async def go_live() -> AsyncIterator[tuple[Any, ...]]:
        async with contextlib.aclosing(live.follow_status(api)) as stream:  # Gradio closes
            async for values in stream:  # this one when the page goes: it closes the rest
                yield values

    def fall_back(tab: str | None) -> list[Any]:
        return [*liveness.switches(tab or "jobs", False), False]

    timers = list(liveness.timers.values())
    streamed = [
        liveness.pulse,
        liveness.following,
        liveness.timers["jobs"],
        liveness.timers["runs"],
        jobs.status,
        runs.status,
    ]
    ui.load(go_live, outputs=streamed, **QUIET).then(
        fall_back, inputs=liveness.shown_tab, outputs=[*timers, liveness.following], **PRIVATE
    )


def show(liveness: Liveness, page: gr.Tab, tab: str, loader: Loader | None = None) -> None:
    """Selecting `page` starts its timer (only; not the Jobs or Runs timer while the stream is
    connected), records it as shown, and fills it at once."""

    def switch(following: bool | None) -> list[Any]:
        return [*liveness.switches(tab, bool(following)), tab]

    timers = list(liveness.timers.values())
    event = page.select(
        switch, inputs=liveness.following, outputs=[*timers, liveness.shown_tab], **PRIVATE
    )
    if loader is not None:
        loader.chain(event)
