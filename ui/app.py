"""Gradio UI (first page): jobs and recent runs, refreshed on a timer. Talks to the API layer
(serve.service.ApiService), never to actors directly."""

from __future__ import annotations

from typing import Any, Protocol

import gradio as gr

JOB_COLUMNS = ["job", "enabled", "paused", "schedule", "next run", "last state", "last finished"]
RUN_COLUMNS = ["run", "job", "state", "trigger", "scheduled for", "rows", "pages", "error"]


class Api(Protocol):
    async def list_jobs(self) -> list[dict[str, Any]]: ...
    async def list_runs(
        self, job: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]: ...


def schedule_text(schedule: dict[str, Any] | None) -> str:
    if not schedule:
        return "manual"
    for kind in ("cron", "interval", "at"):
        if schedule.get(kind):
            return f"{kind} {schedule[kind]}"
    return "?"


def job_rows(jobs: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for job in jobs:
        last = job.get("last_run") or {}
        rows.append(
            [
                job["name"],
                job["enabled"],
                job["paused"],
                schedule_text(job.get("schedule")),
                job.get("next_run_at") or "",
                last.get("state", ""),
                last.get("finished_at") or "",
            ]
        )
    return rows


def run_rows(runs: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            r["run_id"][:12],
            r["job"],
            r["state"],
            r["trigger"],
            r["scheduled_for"],
            r.get("rows_loaded") or 0,
            r.get("pages") or 0,
            (r.get("error") or "")[:200],
        ]
        for r in runs
    ]


def build_ui(api: Api) -> gr.Blocks:
    async def refresh() -> tuple[list[list[Any]], list[list[Any]]]:
        return job_rows(await api.list_jobs()), run_rows(await api.list_runs(limit=50))

    with gr.Blocks(title="turbo-giggle") as ui:
        gr.Markdown("# turbo-giggle\nHTTP APIs synced into DuckDB on a schedule.")
        jobs = gr.Dataframe(headers=JOB_COLUMNS, label="Jobs", interactive=False)
        runs = gr.Dataframe(headers=RUN_COLUMNS, label="Recent runs", interactive=False)
        button = gr.Button("Refresh")
        button.click(refresh, outputs=[jobs, runs], api_name="refresh")
        timer = gr.Timer(3.0)
        timer.tick(refresh, outputs=[jobs, runs], api_name=False)
        ui.load(refresh, outputs=[jobs, runs], api_name=False)
    return ui
