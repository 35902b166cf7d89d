"""Gradio UI: Jobs, Editor, Runs, Data, SQL, Charts and Engines tabs over the API layer
(ui.api.UiApi, implemented by serve.service.ApiService), never the actors directly.

Client endpoints (gradio_client `api_name`s): refresh, run_now, pause, resume, load_job,
validate, save, delete_job, runs, run_detail, cancel_run, preview, sql, sql_csv, sql_parquet,
sql_tables, stats, engines, scale_engines. Timers, row clicks
and chained refreshes are private. Each tab's timer runs only while that tab is shown.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from ui import format as fmt
from ui.api import UiApi
from ui.common import Loader
from ui.data import charts_tab, data_tab
from ui.engines import engines_tab
from ui.jobs import editor_tab, jobs_tab, refresh_tables
from ui.runs import runs_tab
from ui.sql import sql_tab

__all__ = ["UiApi", "build_ui"]

LIVE_SECONDS = 2.0
CHARTS_SECONDS = 10.0
ENGINES_SECONDS = 5.0  # each refresh asks every engine


def build_ui(api: UiApi) -> gr.Blocks:
    ui = gr.Blocks(title="turbo-giggle")
    with ui:
        gr.Markdown("# turbo-giggle\nHTTP APIs synced into DuckDB on a schedule.")
        names = gr.State([])  # job names the dropdowns offer now
        jobs_timer = gr.Timer(LIVE_SECONDS, active=True)
        runs_timer = gr.Timer(LIVE_SECONDS, active=False)
        charts_timer = gr.Timer(CHARTS_SECONDS, active=False)
        engines_timer = gr.Timer(ENGINES_SECONDS, active=False)
        timers = [jobs_timer, runs_timer, charts_timer, engines_timer]
        with gr.Tabs(elem_id="tabs"):
            with gr.Tab("Jobs", id="jobs", elem_id="tab-jobs") as jobs_page:
                jobs = jobs_tab(api)
            with gr.Tab("Editor", id="editor", elem_id="tab-editor") as editor_page:
                editor = editor_tab(api)
            with gr.Tab("Runs", id="runs", elem_id="tab-runs") as runs_page:
                runs = runs_tab(api, runs_timer)
            with gr.Tab("Data", id="data", elem_id="tab-data") as data_page:
                data = data_tab(api)
            with gr.Tab("SQL", id="sql", elem_id="tab-sql") as sql_page:
                sql = sql_tab(api)
            with gr.Tab("Charts", id="charts", elem_id="tab-charts") as charts_page:
                charts = charts_tab(api, charts_timer)
            with gr.Tab("Engines", id="engines", elem_id="tab-engines") as engines_page:
                engines = engines_tab(api, engines_timer)

        async def refresh() -> tuple[list[list[Any]], list[list[Any]]]:
            return await refresh_tables(api)

        async def tick() -> tuple[Any, Any, Any]:
            """Timer: both tables; on failure keep them and say why in the status line."""
            try:
                job_rows, run_rows = await refresh_tables(api)
            except Exception as exc:
                return gr.skip(), gr.skip(), f"Refresh failed: {fmt.describe_error(exc)}"
            return job_rows, run_rows, gr.skip()

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
        sync: dict[str, Any] = {
            "fn": sync_names,
            "inputs": [names, jobs.jobs],
            "outputs": [names, jobs.job, editor.job, runs.job],
            "api_visibility": "private",
        }
        jobs.refresh.click(refresh, outputs=tables, api_name="refresh").then(**sync)
        for event in (
            jobs_timer.tick(tick, outputs=[*tables, jobs.status], api_visibility="private"),
            ui.load(tick, outputs=[*tables, jobs.status], api_visibility="private"),
            *(e.then(refresh, outputs=tables, api_visibility="private") for e in jobs.actions),
            *(e.then(refresh, outputs=tables, api_visibility="private") for e in editor.saved),
        ):
            event.then(**sync)

        def show(page: gr.Tab, live: gr.Timer | None, loader: Loader | None = None) -> None:
            """Selecting `page` starts its timer (only), and fills it at once."""

            def switch() -> list[gr.Timer]:
                return [gr.Timer(active=timer is live) for timer in timers]

            event = page.select(switch, outputs=timers, api_visibility="private")
            if loader is not None:
                loader.chain(event)

        show(jobs_page, jobs_timer)
        show(editor_page, None)
        show(runs_page, runs_timer, runs.loader)
        show(data_page, None, data)
        show(sql_page, None, sql)
        show(charts_page, charts_timer, charts)
        show(engines_page, engines_timer, engines)
    ui.queue(default_concurrency_limit=None)
    return ui
