"""The Jobs tab (table, run now / pause / resume, backfill, full refresh) and the Editor tab
(YAML, validate, save, delete). Each builder lays out its tab inside the current Blocks
context and wires the events local to it; ui.app wires what crosses tabs (timers, job-name
dropdowns)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from tg_actors.chains import as_iso, parse_instant
from tg_actors.errors import JobValidationError
from ui import format as fmt
from ui.api import UiApi
from ui.common import pick_first_cell


@dataclass
class JobsView:
    jobs: gr.Dataframe
    runs: gr.Dataframe
    job: gr.Dropdown
    status: gr.Markdown
    refresh: gr.Button
    actions: list[Any]  # the run now / backfill / pause / … events, to chain a refresh onto


async def refresh_tables(api: UiApi) -> tuple[list[list[Any]], list[list[Any]]]:
    """The Jobs tab's tables: (job rows, recent run rows)."""
    return fmt.job_rows(await api.list_jobs()), fmt.run_rows(await api.list_runs(limit=50))


def jobs_tab(api: UiApi) -> JobsView:
    with gr.Row():
        job = gr.Dropdown(
            label="Job", choices=[], value=None, allow_custom_value=True, elem_id="job-select"
        )
        run_now = gr.Button("Run now", variant="primary", elem_id="run-now")
        pause = gr.Button("Pause", elem_id="pause")
        resume = gr.Button("Resume", elem_id="resume")
        refresh = gr.Button("Refresh", elem_id="refresh")
    with gr.Row():
        start = gr.Textbox(
            label="From", placeholder="2024-05-01 or 2024-05-01T00:00Z", elem_id="backfill-from"
        )
        end = gr.Textbox(label="To", placeholder="2024-06-01 (excluded)", elem_id="backfill-to")
        backfill = gr.Button("Backfill", elem_id="backfill")
        confirm = gr.Checkbox(
            label="I understand the table is replaced", value=False, elem_id="refresh-confirm"
        )
        full_refresh = gr.Button("Full refresh", variant="stop", elem_id="full-refresh")
    status = gr.Markdown("Click a job's row to pick it.", elem_id="jobs-status")
    jobs = gr.Dataframe(
        headers=fmt.JOB_COLUMNS,
        label="Jobs",
        interactive=False,
        type="array",
        elem_id="jobs-table",
    )
    runs = gr.Dataframe(
        headers=fmt.RUN_COLUMNS, label="Recent runs", interactive=False, elem_id="recent-runs"
    )

    async def do_run_now(name: str | None) -> str:
        if not name:
            return "Pick a job first."
        try:
            run_id = await api.trigger(name)
        except Exception as exc:
            return fmt.describe_error(exc)
        return f"Queued run {run_id} of job {name!r}."

    async def do_pause(name: str | None) -> str:
        return await set_paused(api, name, True)

    async def do_resume(name: str | None) -> str:
        return await set_paused(api, name, False)

    async def do_backfill(name: str | None, since: str | None, until: str | None) -> str:
        return await queue_backfill(api, name, since, until)

    async def do_full_refresh(name: str | None, confirmed: bool | None) -> str:
        return await queue_full_refresh(api, name, bool(confirmed))

    actions = [
        run_now.click(do_run_now, inputs=job, outputs=status, api_name="run_now"),
        backfill.click(do_backfill, inputs=[job, start, end], outputs=status, api_name="backfill"),
        full_refresh.click(
            do_full_refresh, inputs=[job, confirm], outputs=status, api_name="full_refresh"
        ),
        pause.click(do_pause, inputs=job, outputs=status, api_name="pause"),
        resume.click(do_resume, inputs=job, outputs=status, api_name="resume"),
    ]
    jobs.select(pick_first_cell, outputs=job, api_visibility="private")
    return JobsView(jobs, runs, job, status, refresh, actions)


async def queue_backfill(api: UiApi, name: str | None, since: str | None, until: str | None) -> str:
    """Backfill [From, To) of the picked job: a time without an offset, or a date, is UTC."""
    if not name:
        return "Pick a job first."
    if not (since or "").strip() or not (until or "").strip():
        return "Enter From and To (an ISO date or datetime) to backfill."
    try:
        start = parse_instant(since or "")
    except ValueError:
        return f"From {since!r} is not an ISO date or datetime."
    try:
        end = parse_instant(until or "")
    except ValueError:
        return f"To {until!r} is not an ISO date or datetime."
    try:
        run_id = await api.backfill(name, start, end)
    except Exception as exc:
        return fmt.describe_error(exc)
    return f"Queued backfill run {run_id} of job {name!r} over [{as_iso(start)}, {as_iso(end)})."


async def queue_full_refresh(api: UiApi, name: str | None, confirmed: bool) -> str:
    if not name:
        return "Pick a job first."
    if not confirmed:
        return "Tick 'I understand the table is replaced' first: nothing was queued."
    try:
        run_id = await api.refresh(name)
    except Exception as exc:
        return fmt.describe_error(exc)
    return (
        f"Queued full refresh run {run_id} of job {name!r}: its table is replaced when the run"
        " succeeds."
    )


async def set_paused(api: UiApi, name: str | None, paused: bool) -> str:
    if not name:
        return "Pick a job first."
    try:
        await api.set_paused(name, paused)
    except Exception as exc:
        return fmt.describe_error(exc)
    return f"Job {name!r} {'paused' if paused else 'resumed'}."


@dataclass
class EditorView:
    job: gr.Dropdown
    saved: list[Any]  # the save / delete events, to chain a job-name sync onto


def editor_tab(api: UiApi) -> EditorView:
    with gr.Row():
        job = gr.Dropdown(
            label="Job to edit",
            choices=[fmt.NEW_JOB],
            value=fmt.NEW_JOB,
            allow_custom_value=True,
            elem_id="editor-job",
        )
        validate = gr.Button("Validate", elem_id="validate")
        save = gr.Button("Save", variant="primary", elem_id="save")
        delete = gr.Button("Delete", variant="stop", elem_id="delete")
    status = gr.Markdown(EditorActions.NEW_STATUS, elem_id="editor-status")
    errors = gr.Dataframe(
        headers=fmt.ERROR_COLUMNS,
        label="Errors by field",
        interactive=False,
        elem_id="editor-errors",
    )
    editor = gr.Code(
        value=fmt.JOB_TEMPLATE,
        language="yaml",
        label="Job (YAML)",
        interactive=True,
        lines=24,
        elem_id="editor",
    )

    act = EditorActions(api)
    job.input(act.load, inputs=job, outputs=[editor, status, errors], api_name="load_job")
    validate.click(act.validate, inputs=editor, outputs=[status, errors], api_name="validate")
    saved = [
        save.click(act.save, inputs=[job, editor], outputs=[status, errors, job], api_name="save"),
        delete.click(act.delete, inputs=job, outputs=[status, job, editor], api_name="delete_job"),
    ]
    return EditorView(job, saved)


class EditorActions:
    """The Editor tab's handlers; errors become (status line, error rows)."""

    NEW_STATUS = "New job: edit the template, then Validate and Save."

    def __init__(self, api: UiApi) -> None:
        self.api = api

    async def load(self, name: str | None) -> tuple[str, str, list[list[str]]]:
        if not name or name == fmt.NEW_JOB:
            return fmt.JOB_TEMPLATE, self.NEW_STATUS, []
        try:
            text = await self.api.job_yaml(name)
        except Exception as exc:
            return "", fmt.describe_error(exc), []
        return text, f"Editing job {name!r}. Secrets show as `***`; saving `***` keeps them.", []

    async def validate(self, body: str | None) -> tuple[str, list[list[str]]]:
        try:
            job_dict = await self.api.validate_job(body or "")
        except JobValidationError as exc:
            return fmt.describe_error(exc), fmt.error_rows(exc.errors)
        except Exception as exc:
            return fmt.describe_error(exc), []
        return f"Valid: job {job_dict.get('name', '?')!r}.", []

    async def save(
        self, selected: str | None, body: str | None
    ) -> tuple[str, list[list[str]], Any]:
        text = body or ""
        name = fmt.job_name_from_yaml(text)
        if name is None and selected and selected != fmt.NEW_JOB:
            name = selected
        if name is None:
            return "Invalid job: 1 error(s), see the table.", [["name", "required"]], gr.skip()
        try:
            created, _ = await self.api.put_job(name, text)
        except JobValidationError as exc:
            return fmt.describe_error(exc), fmt.error_rows(exc.errors), gr.skip()
        except Exception as exc:
            return fmt.describe_error(exc), [], gr.skip()
        verb = "Created" if created else "Saved"
        return f"{verb} job {name!r}.", [], name

    async def delete(self, selected: str | None) -> tuple[str, Any, Any]:
        if not selected or selected == fmt.NEW_JOB:
            return "Pick a saved job to delete.", gr.skip(), gr.skip()
        try:
            await self.api.delete_job(selected)
        except Exception as exc:
            return fmt.describe_error(exc), gr.skip(), gr.skip()
        return f"Deleted job {selected!r}; its runs stay in history.", fmt.NEW_JOB, fmt.JOB_TEMPLATE
