"""A test read ("preview") of a job, as the Editor's Test button shows it: the answer of
`POST /api/preview` (docs: /work/notes/preview_shape.md, CONTRACT §7.5) -> status line,
warnings, tables and sample frames. Pure, no Gradio (tests/unit/test_ui_preview.py).

The API masks secrets in URLs, headers and excerpts; nothing here adds any.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pandas as pd

REQUEST_COLUMNS = ["kind", "method", "url", "status", "ms", "bytes", "excerpt"]
COLUMN_COLUMNS = ["name", "type", "change"]
EXCERPT_CHARS = 200  # of a body excerpt, in the requests table
CELL_CHARS = 500  # of a nested value shown as JSON in a sample cell

# what each stop code means, for a code the API sends without a detail
STOP_REASONS = {
    "empty_page": "a page held no records",
    "short_page": "a page held fewer records than the page size",
    "total_reached": "the total the API announced was reached",
    "no_next_link": "the last page had no next link",
    "no_next_cursor": "the last page had no next cursor",
    "has_more_false": "the API said there is no more",
    "single_request": "the job reads one request (no pagination)",
    "loop_guard": "a page repeated an earlier one (loop guard)",
    "page_limit": "the test read's page limit was reached; a full read goes on",
    "max_pages": "the job's max_pages was reached",
    "rule_stop": "a rule stopped the read",
    "rule_skip": "a rule skipped the response",
    "error": "the read failed",
}


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "?" if value is None else str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.0f}"


def _plural(count: Any, word: str) -> str:
    return f"{_number(count)} {word}{'' if count == 1 else 's'}"


def stop_text(stop: dict[str, Any] | None) -> str:
    """`code`: detail (or the code's meaning when the API gave no detail)."""
    if not stop:
        return "no stop reason given"
    code = str(stop.get("reason") or "?")
    detail = str(stop.get("detail") or STOP_REASONS.get(code, "")).strip()
    return f"`{code}`: {detail}" if detail else f"`{code}`"


def status_line(answer: dict[str, Any]) -> str:
    """One Markdown paragraph: what was read, why it stopped, the error if any."""
    job = answer.get("job") or "?"
    head = (
        f"Test read of job {job!r}: {_plural(answer.get('records'), 'record')} on "
        f"{_plural(answer.get('pages_read'), 'page')} in {_number(answer.get('elapsed_ms'))} ms"
        f" ({_plural(len(answer.get('requests') or []), 'request')}); nothing was written."
    )
    lines = [head, f"Stopped: {stop_text(answer.get('stop'))}."]
    table = answer.get("table")
    exists = answer.get("table_exists")
    if table:
        if exists is True:
            lines.append(f"Table `{table}` exists: the column changes below are against it.")
        elif exists is False:
            lines.append(f"Table `{table}` does not exist yet: a run creates it.")
    chain = answer.get("chain")
    if chain:
        lines.append(f"Read for: {chain_text(chain)}.")
    cursor = answer.get("cursor")
    if cursor:
        lines.append(cursor_text(cursor))
    if answer.get("error"):
        lines.append(f"**Error:** {answer['error']}")
    return "  \n".join(lines)


def chain_text(chain: dict[str, Any]) -> str:
    parts = []
    if chain.get("row"):
        row = chain["row"]
        parts.append("row " + ", ".join(f"{k}={v}" for k, v in row.items()))
    window = chain.get("window")
    if window:
        parts.append(f"window [{window.get('start')}, {window.get('end')})")
    return "; ".join(parts) or "no row"


def cursor_text(cursor: dict[str, Any]) -> str:
    sent = cursor.get("sent")
    newest = cursor.get("newest")
    param = cursor.get("param") or "?"
    said = f"sent {param}={sent}" if sent is not None else f"no {param} sent (first run)"
    return f"Incremental cursor: {said}; newest in the records read: {newest or 'none'}."


def warnings_markdown(answer: dict[str, Any]) -> str:
    """The answer's warnings as a Markdown list, or a line saying there are none."""
    items = [str(w) for w in answer.get("warnings") or []]
    if not items:
        return "No warnings."
    return "**Warnings**\n\n" + "\n".join(f"- {_markdown_safe(w)}" for w in items)


def _markdown_safe(text: str) -> str:
    """One list item: no line breaks, and no HTML the Markdown would render."""
    return " ".join(text.split()).replace("<", "&lt;").replace(">", "&gt;")


def _excerpt(text: Any) -> str:
    if not text:
        return ""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


def request_rows(answer: dict[str, Any]) -> list[list[Any]]:
    """Every HTTP exchange, in order: kind, method, url, status, ms, bytes, excerpt."""
    rows = []
    for r in answer.get("requests") or []:
        ms = r.get("elapsed_ms")
        rows.append(
            [
                r.get("kind") or "page",
                r.get("method") or "",
                r.get("url") or "",
                "" if r.get("status") is None else r.get("status"),
                "" if ms is None else round(float(ms), 1),
                "" if r.get("bytes") is None else r.get("bytes"),
                _excerpt(r.get("excerpt")),
            ]
        )
    return rows


def _cell(value: Any) -> Any:
    """A sample cell: scalars as they are, lists and objects as (shortened) JSON text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def sample_frame(rows: Iterable[dict[str, Any]] | None) -> pd.DataFrame:
    """Sample records as a frame: every key any record has, in first-seen order; nested
    values as JSON text."""
    records = [r for r in rows or [] if isinstance(r, dict)]
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(str(k) for k in record))
    data = [[_cell(record.get(name)) for name in names] for record in records]
    return pd.DataFrame(data, columns=list(names), dtype=object)


def samples(answer: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(transformed rows, raw records) of the answer's sample."""
    sample = answer.get("sample") or {}
    return sample_frame(sample.get("transformed")), sample_frame(sample.get("raw"))


def column_rows(answer: dict[str, Any]) -> list[list[str]]:
    """The DuckDB columns the records would land as: name, type, what the table's schema
    evolution would do (empty when there is no table to compare with)."""
    return [
        [str(c.get("name")), str(c.get("type") or ""), str(c.get("change") or "")]
        for c in answer.get("columns") or []
    ]


def next_request_text(answer: dict[str, Any]) -> str:
    """What a full read would request next, or that it would stop here."""
    following = answer.get("next_request")
    if following:
        method = following.get("method") or "GET"
        return f"**Next request** of a full read: `{method} {following.get('url') or '?'}`"
    if answer.get("error"):
        return "No next request: the read failed."
    return "No next request: a full read would stop here too."
