"""The SQL tab: one read-only query over the live database (the API's `sql`, as
`POST /api/sql`), the tables and their columns beside the editor, the first rows as a grid,
and the whole result to download as CSV or Parquet (the API's `sql_stream`)."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import gradio as gr
import pandas as pd
from gradio.utils import get_upload_folder

from ui import format as fmt
from ui.api import UiApi
from ui.common import Loader

SHOWN_ROWS = 1_000
DOWNLOADS = {"csv": ".csv", "parquet": ".parquet"}
DOWNLOAD_KEEP = 15 * 60.0  # seconds a download stays on the Serve replica for the browser
EXAMPLE = "SELECT * FROM tg.runs ORDER BY queued_at DESC LIMIT 20"


def download_folder(root: Path | None = None, keep: float = DOWNLOAD_KEEP) -> Path:
    """A new folder for one download, under Gradio's cache folder so that Gradio serves the
    file where it is (no copy of it); first removes the downloads older than `keep` seconds,
    so the replica's disk holds only the last minutes' results."""
    base = (root or Path(get_upload_folder())) / "tg-sql"
    base.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - keep
    for old in base.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:  # another replica thread removed it first
            continue
    folder = base / uuid.uuid4().hex
    folder.mkdir()
    return folder


def schema_markdown(tables: list[dict[str, Any]]) -> str:
    """The data tables and their columns, for beside the editor."""
    if not tables:
        return "No data tables yet. `tg.runs`, `tg.run_logs`, `tg.jobs` can be read too."
    lines = []
    for table in sorted(tables, key=lambda t: str(t.get("name"))):
        rows = table.get("rows")
        lines.append(f"**{table.get('name')}**" + (f" ({rows} rows)" if rows is not None else ""))
        columns = table.get("columns") or []
        lines.extend(f"- `{c.get('name')}` {c.get('type', '')}" for c in columns)
    lines.append("\nAlso: `tg.runs`, `tg.run_logs`, `tg.jobs`.")
    return "\n".join(lines)


def result_status(answer: dict[str, Any]) -> str:
    count = int(answer.get("row_count") or 0)
    more = f"; the first {count} are shown, the result has more" if answer.get("truncated") else ""
    return f"{count} row(s){more}. {float(answer.get('elapsed_ms') or 0):.1f} ms."


def sql_tab(api: UiApi) -> Loader:
    with gr.Row():
        with gr.Column(scale=3):
            editor = gr.Code(EXAMPLE, language="sql", label="Query", elem_id="sql-editor")
            with gr.Row():
                run = gr.Button("Run", variant="primary", elem_id="sql-run")
                as_csv = gr.Button("Download CSV", elem_id="sql-csv")
                as_parquet = gr.Button("Download Parquet", elem_id="sql-parquet")
        with gr.Column(scale=1):
            schema = gr.Markdown("", elem_id="sql-schema")
            refresh = gr.Button("Refresh tables", elem_id="sql-refresh", size="sm")
    status = gr.Markdown("", elem_id="sql-status")
    result = gr.Dataframe(
        label=f"Result (first {SHOWN_ROWS} rows)", interactive=False, elem_id="sql-result"
    )
    download = gr.File(label="Download", interactive=False, elem_id="sql-file")

    async def tables() -> str:
        try:
            return schema_markdown(await api.list_tables())
        except Exception as exc:
            return fmt.describe_error(exc)

    async def query(sql: str) -> tuple[Any, str]:
        if not (sql or "").strip():
            return gr.skip(), "Write a query first."
        try:
            answer = await api.sql(sql, [], SHOWN_ROWS)
        except Exception as exc:
            return pd.DataFrame(), fmt.describe_error(exc)
        return fmt.result_frame(answer), result_status(answer)

    async def export(sql: str, kind: Literal["csv", "parquet"]) -> tuple[Any, str]:
        if not (sql or "").strip():
            return None, "Write a query first."
        folder = download_folder()
        path = folder / f"result{DOWNLOADS[kind]}"
        try:
            stream = await api.sql_stream(sql, [], None, fmt=kind)
            with path.open("wb") as out:
                async for chunk in stream:
                    out.write(chunk)
        except Exception as exc:
            shutil.rmtree(folder, ignore_errors=True)  # nothing half-written is offered
            return None, fmt.describe_error(exc)
        size = path.stat().st_size
        return str(path), f"The whole result as {kind.upper()}: {size:,} bytes."

    async def csv(sql: str) -> tuple[Any, str]:
        return await export(sql, "csv")

    async def parquet(sql: str) -> tuple[Any, str]:
        return await export(sql, "parquet")

    run.click(query, inputs=editor, outputs=[result, status], api_name="sql")
    as_csv.click(csv, inputs=editor, outputs=[download, status], api_name="sql_csv")
    as_parquet.click(parquet, inputs=editor, outputs=[download, status], api_name="sql_parquet")
    refresh.click(tables, outputs=schema, api_name="sql_tables")
    return Loader(tables, [schema])
