"""The Jobs tab (table, run now / pause / resume, backfill, full refresh, the commands'
history) and the Editor tab (YAML, validate, save, delete). Each builder lays out its tab
inside the current Blocks context and wires the events local to it; ui.app wires what crosses
tabs (live pulses, timers, job-name dropdowns)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import gradio as gr

from tg_actors.chains import as_iso, parse_instant
from tg_actors.errors import JobValidationError
from ui import form as jobform
from ui import format as fmt
from ui import preview as pv
from ui.api import UiApi
from ui.common import pick_first_cell
from ui.history import HistoryView, history_view, load_history


@dataclass
class JobsView:
    jobs: gr.Dataframe
    runs: gr.Dataframe
    job: gr.Dropdown
    status: gr.Markdown
    refresh: gr.Button
    actions: list[Any]  # the run now / backfill / pause / … events, to chain a refresh onto
    history: HistoryView


async def refresh_tables(api: UiApi) -> tuple[list[list[Any]], list[list[Any]]]:
    """The Jobs tab's tables: (job rows, recent run rows), read at once."""
    jobs, runs = await asyncio.gather(api.list_jobs(), api.list_runs(limit=50))
    return fmt.job_rows(jobs), fmt.run_rows(runs)


async def live_tables(api: UiApi, name: str | None) -> tuple[Any, Any, Any, Any, Any]:
    """Page load, live pulse and fallback timer: (job rows, run rows, history rows, history
    caption, status line); on failure the tables stay and the status line says why."""
    try:
        (job_rows, run_rows), (rows, caption) = await asyncio.gather(
            refresh_tables(api), load_history(api, name)
        )
    except Exception as exc:
        kept = (gr.skip(), gr.skip(), gr.skip(), gr.skip())
        return (*kept, f"Refresh failed: {fmt.describe_error(exc)}")
    return job_rows, run_rows, rows, caption, gr.skip()


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
    history = history_view()

    async def do_history(name: str | None) -> tuple[Any, str]:
        return await load_history(api, name)

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
    job.change(do_history, inputs=job, outputs=history.outputs, api_name="history")
    return JobsView(jobs, runs, job, status, refresh, actions, history)


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
        test = gr.Button("Test", elem_id="test-job")
        pages = gr.Number(
            label="Test pages",
            value=3,
            minimum=1,
            maximum=20,
            precision=0,
            step=1,
            elem_id="test-pages",
        )
        save = gr.Button("Save", variant="primary", elem_id="save")
        delete = gr.Button("Delete", variant="stop", elem_id="delete")
    status = gr.Markdown(EditorActions.NEW_STATUS, elem_id="editor-status")
    errors = gr.Dataframe(
        headers=fmt.ERROR_COLUMNS,
        label="Errors by field",
        interactive=False,
        elem_id="editor-errors",
    )
    form = guided_form()
    editor = gr.Code(
        value=fmt.JOB_TEMPLATE,
        language="yaml",
        label="Job (YAML)",
        interactive=True,
        lines=24,
        elem_id="editor",
    )
    shown = test_read_view()

    act = EditorActions(api)
    job.input(act.load, inputs=job, outputs=[editor, status, errors], api_name="load_job")
    validate.click(act.validate, inputs=editor, outputs=[status, errors], api_name="validate")
    test.click(
        act.test,
        inputs=[editor, pages],
        outputs=[status, errors, *shown],
        api_name="test_job",
    )
    form.write.click(
        write_form_yaml,
        inputs=form.inputs,
        outputs=[editor, form.status, job],
        api_name="form_yaml",
    )
    saved = [
        save.click(act.save, inputs=[job, editor], outputs=[status, errors, job], api_name="save"),
        delete.click(act.delete, inputs=job, outputs=[status, job, editor], api_name="delete_job"),
    ]
    return EditorView(job, saved)


def test_read_view() -> list[Any]:
    """Where the Test button's answer shows: status, warnings, requests, sample (raw rows
    folded), column types and the next request, in the order EditorActions.test fills them."""
    with gr.Accordion("Test read", open=True, elem_id="test-read"):
        summary = gr.Markdown(
            "Test reads the job in the editor (saved or not) and writes nothing.",
            elem_id="test-status",
        )
        warnings = gr.Markdown("", elem_id="test-warnings")
        requests = gr.Dataframe(
            headers=pv.REQUEST_COLUMNS,
            label="Requests",
            interactive=False,
            wrap=True,
            elem_id="test-requests",
        )
        sample = gr.Dataframe(
            label="Sample rows (after transform)", interactive=False, elem_id="test-sample"
        )
        with gr.Accordion("Raw records (as the API sent them)", open=False):
            raw = gr.Dataframe(label="Raw records", interactive=False, elem_id="test-raw")
        columns = gr.Dataframe(
            headers=pv.COLUMN_COLUMNS,
            label="Column types",
            interactive=False,
            elem_id="test-columns",
        )
        following = gr.Markdown("", elem_id="test-next")
    return [summary, warnings, requests, sample, raw, columns, following]


@dataclass
class GuidedForm:
    inputs: list[Any]  # in ui.form.FIELD_NAMES order
    write: gr.Button
    status: gr.Markdown


FIELD_LABELS = {
    "name": "Name (lowercase letters, digits, _)",
    "url": "URL",
    "method": "Method",
    "auth": "Auth type",
    "token_env": "Token variable (NAME of the environment variable)",
    "username_env": "Username variable",
    "password_env": "Password variable",
    "key_name": "API key header / parameter name",
    "key_in": "API key sent in",
    "key_env": "API key variable",
    "token_url": "Token URL",
    "client_id_env": "Client id variable",
    "client_secret_env": "Client secret variable",
    "refresh_token_env": "Refresh token variable",
    "scope": "Scope (optional)",
    "login_url": "Login URL",
    "token_path": "Token path in the login answer",
    "records": "Records path (JSONPath)",
    "paginate": "Pagination",
    "page_param": "Page parameter",
    "page_size_param": "Page size parameter (optional)",
    "page_size": "Page size (optional)",
    "offset_param": "Offset parameter",
    "limit_param": "Limit parameter",
    "limit": "Limit",
    "cursor_param": "Cursor parameter",
    "cursor_path": "Next cursor path",
    "next_path": "Next URL path",
    "cursor_field": "Incremental: cursor field (optional)",
    "since_param": "Incremental: sent as parameter",
    "initial": "Incremental: initial value (optional)",
    "table": "Destination table (default: the name)",
    "write": "Write mode",
    "primary_key": "Primary key (comma-separated; merge needs it)",
    "interval": "Schedule interval (optional, e.g. 1h)",
}
CHOICES = {
    "method": jobform.METHODS,
    "auth": jobform.AUTH_KINDS,
    "key_in": jobform.KEY_PLACES,
    "paginate": jobform.PAGINATE_KINDS,
    "write": jobform.WRITE_MODES,
}
# a field's element id: form-<name with dashes>; the write mode is form-write-mode, as
# form-write is the button
ELEM_IDS = {"write": "form-write-mode"}


def _form_field(name: str) -> Any:
    label = FIELD_LABELS[name]
    value = getattr(jobform.DEFAULTS, name)
    elem_id = ELEM_IDS.get(name, "form-" + name.replace("_", "-"))
    auth_kinds = [k for k, used in jobform.AUTH_FIELDS.items() if name in used]
    page_kinds = [k for k, used in jobform.PAGINATE_FIELDS.items() if name in used]
    visible = not auth_kinds and not page_kinds  # those show once their kind is chosen
    if name in CHOICES:
        return gr.Dropdown(
            label=label, choices=CHOICES[name], value=value, elem_id=elem_id, visible=visible
        )
    if name in ("page_size", "limit"):
        return gr.Number(
            label=label, value=value, minimum=1, precision=0, elem_id=elem_id, visible=visible
        )
    return gr.Textbox(label=label, value=value, max_lines=1, elem_id=elem_id, visible=visible)


def guided_form() -> GuidedForm:
    """The accordion 'New job from a form': its fields, and Write YAML, which puts the job
    they describe into the editor (ui.form builds it)."""
    made: dict[str, Any] = {}
    with gr.Accordion("New job from a form", open=False, elem_id="form"):
        gr.Markdown(
            "Fill in what you know and click **Write YAML**: the job lands in the editor below,"
            " where it stays the source of truth (edit, Validate, Test, Save). Secrets are never"
            " typed here: give the *name* of the environment variable holding each one, the job"
            " refers to it as `${NAME}`."
        )
        groups = [
            ["name", "url", "method", "interval"],
            ["auth"],
            [n for n in jobform.FIELD_NAMES if any(n in f for f in jobform.AUTH_FIELDS.values())],
            ["records", "paginate"],
            [
                n
                for n in jobform.FIELD_NAMES
                if any(n in f for f in jobform.PAGINATE_FIELDS.values())
            ],
            ["cursor_field", "since_param", "initial"],
            ["table", "write", "primary_key"],
        ]
        for group in groups:
            with gr.Row():
                for name in group:
                    made[name] = _form_field(name)
        with gr.Row():
            write = gr.Button("Write YAML", variant="primary", elem_id="form-write")
        status = gr.Markdown("", elem_id="form-status")
    missing = set(jobform.FIELD_NAMES) - set(made)
    assert not missing, f"form fields without a widget: {missing}"

    auth_named = sorted({n for f in jobform.AUTH_FIELDS.values() for n in f})
    page_named = sorted({n for f in jobform.PAGINATE_FIELDS.values() for n in f})

    def show_auth(kind: str | None) -> list[Any]:
        used = jobform.visible(kind, jobform.AUTH_FIELDS)
        return [gr.update(visible=n in used) for n in auth_named]

    def show_paginate(kind: str | None) -> list[Any]:
        used = jobform.visible(kind, jobform.PAGINATE_FIELDS)
        return [gr.update(visible=n in used) for n in page_named]

    made["auth"].change(
        show_auth,
        inputs=made["auth"],
        outputs=[made[n] for n in auth_named],
        api_visibility="private",
    )
    made["paginate"].change(
        show_paginate,
        inputs=made["paginate"],
        outputs=[made[n] for n in page_named],
        api_visibility="private",
    )
    return GuidedForm([made[n] for n in jobform.FIELD_NAMES], write, status)


def write_form_yaml(*values: Any) -> tuple[Any, str, Any]:
    """Write YAML: (editor text, form status, editor job) from the form's values; on a problem
    the editor is left as it is."""
    form = jobform.JobForm.from_values(*values)
    try:
        text = jobform.job_yaml(form)
    except jobform.FormError as exc:
        lines = "\n".join(f"- {p}" for p in exc.problems)
        return gr.skip(), f"Nothing written, the form needs:\n\n{lines}", gr.skip()
    notes = jobform.secret_notes(form)
    said = "Written into the editor: Validate, Test and Save it there."
    if notes:
        said += "\n\n" + "\n".join(f"- {n}" for n in notes)
    return text, said, fmt.NEW_JOB


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

    async def test(self, body: str | None, pages: float | None) -> tuple[Any, ...]:
        """Test: (status, error rows, then the test read view's values, see test_read_view)."""
        count = max(1, min(20, int(pages or 3)))
        try:
            answer = await self.api.preview(body or "", pages=count)
        except JobValidationError as exc:
            return (fmt.describe_error(exc), fmt.error_rows(exc.errors), *self.cleared(exc))
        except Exception as exc:
            return (fmt.describe_error(exc), [], *self.cleared(exc))
        transformed, raw = pv.samples(answer)
        job = answer.get("job") or "?"
        said = f"Tested job {job!r}: see the test read below."
        if answer.get("error"):
            said = f"Tested job {job!r}: the read failed, see the test read below."
        return (
            said,
            [],
            pv.status_line(answer),
            pv.warnings_markdown(answer),
            pv.request_rows(answer),
            transformed,
            raw,
            pv.column_rows(answer),
            pv.next_request_text(answer),
        )

    @staticmethod
    def cleared(exc: BaseException) -> tuple[Any, ...]:
        """The test read view when there is no answer: emptied, the status saying why."""
        empty = pv.sample_frame([])
        return (f"No test read: {fmt.describe_error(exc)}", "", [], empty, empty, [], "")

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
