"""The Data tab (tables, a preview, columns and types) and the Charts tab (runs per state,
rows loaded over time by job)."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from tg_actors.errors import TableNotFound
from ui import format as fmt
from ui.api import UiApi
from ui.common import Loader, pick_first_cell

PREVIEW_ROWS = 50


def data_tab(api: UiApi) -> Loader:
    with gr.Row():
        table = gr.Dropdown(
            label="Table", choices=[], value=None, allow_custom_value=True, elem_id="table-select"
        )
        refresh = gr.Button("Refresh tables", elem_id="refresh-tables")
    status = gr.Markdown("", elem_id="data-status")
    tables = gr.Dataframe(
        headers=fmt.TABLES_COLUMNS,
        label="Tables",
        interactive=False,
        elem_id="tables-list",
    )
    with gr.Row():
        columns = gr.Dataframe(
            headers=fmt.TABLE_COLUMNS,
            label="Columns",
            interactive=False,
            elem_id="table-columns",
            scale=1,
        )
        preview = gr.Dataframe(
            label=f"Preview (first {PREVIEW_ROWS} rows)",
            interactive=False,
            elem_id="table-preview",
            scale=3,
        )

    async def list_tables() -> tuple[Any, Any, Any]:
        try:
            found = await api.list_tables()
        except Exception as exc:
            return gr.skip(), gr.skip(), fmt.describe_error(exc)
        names = fmt.choices(str(t["name"]) for t in found)
        return gr.Dropdown(choices=names), fmt.table_rows(found), gr.skip()

    async def show(name: str | None) -> tuple[pd.DataFrame, list[list[str]], str]:
        if not name:
            return pd.DataFrame(), [], "Pick a table."
        try:
            found = await api.list_tables()
            info = next((t for t in found if t["name"] == name), None)
            if info is None:
                raise TableNotFound(name)
            # the SQL tab's path (POST /api/sql): one snapshot, the reader's limits
            shown = await api.sql(f"SELECT * FROM {fmt.sql_name(name)}", [], PREVIEW_ROWS)
        except Exception as exc:
            return pd.DataFrame(), [], fmt.describe_error(exc)
        total = f"{info['rows']} rows" if info.get("rows") is not None else "rows: ?"
        return fmt.result_frame(shown), fmt.column_rows(info), f"Table {name!r}: {total}."

    listed = [table, tables, status]
    refresh.click(list_tables, outputs=listed, api_visibility="private")
    table.change(show, inputs=table, outputs=[preview, columns, status], api_name="preview")
    tables.select(pick_first_cell, outputs=table, api_visibility="private")
    return Loader(list_tables, listed)


def charts_tab(api: UiApi, timer: gr.Timer) -> Loader:
    """The plots, refreshed by a button and by `timer` (active while the tab shows)."""
    with gr.Row():
        refresh = gr.Button("Refresh charts", elem_id="refresh-charts")
    status = gr.Markdown("", elem_id="charts-status")
    with gr.Row():
        by_state = gr.BarPlot(
            fmt.state_frame({}),
            x="state",
            y="runs",
            title="Runs per state",
            sort=fmt.RUN_STATES,
            elem_id="runs-by-state",
        )
        loaded = gr.ScatterPlot(
            fmt.loaded_frame([]),
            x="finished_at",
            y="rows",
            color="job",
            title="Rows loaded per succeeded run, over time",
            x_title="finished (UTC)",
            y_lim=[0, None],
            tooltip="all",
            elem_id="rows-loaded",
        )

    plots = [by_state, loaded, status]

    async def stats() -> tuple[Any, Any, str]:
        try:
            found = await api.run_stats()
        except Exception as exc:
            return gr.skip(), gr.skip(), fmt.describe_error(exc)
        by_state, loaded = (
            fmt.state_frame(found.get("by_state")),
            fmt.loaded_frame(found.get("loaded")),
        )
        return (
            by_state,
            loaded,
            f"{int(by_state['runs'].sum())} runs; {int(loaded['rows'].sum())} rows loaded by succeeded runs.",
        )

    async def legend(shown: Any) -> Any:
        """The plot builds its colour scale only when its spec changes, not when its data does:
        list the jobs shown (a spec change) after each data update, so new jobs get colours."""
        plot = shown if isinstance(shown, dict) else getattr(shown, "__dict__", {})
        jobs = fmt.plot_series(plot.get("columns"), plot.get("data"), "job")
        return gr.ScatterPlot(colors_in_legend=jobs or None)

    then = Loader(legend, [loaded], [loaded])
    then.chain(refresh.click(stats, outputs=plots, api_name="stats"))
    then.chain(timer.tick(stats, outputs=plots, api_visibility="private"))
    return Loader(stats, plots, then=then)
