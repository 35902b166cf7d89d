"""Logging set-up shared by the driver and every Ray worker (worker_process_setup_hook).

TG_LOG_FORMAT picks the shape of a line: `text` (default) one human line per record, `json`
one JSON object per line. In JSON, the actors and the Serve app log through Ray's own
`LoggingConfig(encoding="JSON")` (runtime.py passes it to ray.init and to Serve); the driver,
before Ray starts or without Ray, through `JsonFormatter` here. Either way the fields of a
run-state line (`run_state run_id=%s job=%s from=%s to=%s ... attempt=%d`, scheduler/states.py)
become fields of the record (`run_id`, `job`, `from`, `to`, `state`, `attempt`, ...): the
`RunFields` filter put on those loggers lifts them out of the message's arguments, so a log
shipper filters on `run_id` without parsing the message, and Ray's JSON formatter (which
writes every non-standard record attribute) carries them too.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
FORMAT_VARIABLE = "TG_LOG_FORMAT"
RUN_STATE_PREFIX = "run_state "
# `key=%s` / `key=%d` in a run-state line's format string: the keys, in argument order
_FIELD = re.compile(r"(\w+)=%[sdfr]")
# attributes every LogRecord has: not written again as fields of a JSON line
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
_OWN_HANDLER = "_tg_json_handler"


def log_format(environ: dict[str, str] | None = None) -> LogFormat:
    """TG_LOG_FORMAT: `json`, else `text` (unset or anything else)."""
    raw = (os.environ if environ is None else environ).get(FORMAT_VARIABLE, "text")
    return "json" if raw.strip().lower() == "json" else "text"


def run_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The key=value fields of a run-state line, by its format string and arguments; {} for
    any other record. `to` is also given as `state` (the state the run is now in)."""
    msg = record.msg
    if not isinstance(msg, str) or not msg.startswith(RUN_STATE_PREFIX):
        return {}
    args = record.args if isinstance(record.args, tuple) else ()
    keys = _FIELD.findall(msg)
    if len(keys) != len(args):
        return {}
    fields: dict[str, Any] = {}
    for key, value in zip(keys, args, strict=True):
        fields[key] = value if isinstance(value, int | float | bool) else str(value)
    if "to" in fields:
        fields["state"] = fields["to"]
    return fields


# the loggers that write run-state lines (scheduler/states.py; the local runner's)
RUN_STATE_LOGGERS = ("tg_actors.scheduler.states", "tg_actors.localrun")


class RunFields(logging.Filter):
    """Copies a run-state line's fields onto its record. A logger filter, so it sees the
    record after `extra=` was applied (a caller's extra field wins; a record factory, which
    runs before, would make logging refuse such an extra with KeyError)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in run_fields(record).items():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


def install_run_fields() -> None:
    """Put RunFields on the loggers of run-state lines (idempotent; a logger created later
    by getLogger is the same object, so the order of imports does not matter)."""
    for name in RUN_STATE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RunFields) for f in logger.filters):
            logger.addFilter(RunFields())


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (ISO 8601, UTC), level, logger, message, the record's
    extra fields (`extra=`, run-state fields), exc_text for an exception; never a newline."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in body:
                body[key] = value
        if record.exc_info:
            body["exc_text"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exc_text"] = record.exc_text
        # default=str: an extra field that JSON has no type for (a datetime) still writes
        return json.dumps(body, default=str, ensure_ascii=False)


def _levels(level: str) -> None:
    logging.getLogger("tg_actors").setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access", "ray.serve"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def setup() -> None:
    """The driver's logging (the CLI, tests): text lines, or JSON lines by JsonFormatter."""
    level = os.environ.get("TG_LOG_LEVEL", "INFO").upper()
    install_run_fields()
    if log_format() == "json":
        root = logging.getLogger()
        if not any(getattr(h, _OWN_HANDLER, False) for h in root.handlers):
            handler = logging.StreamHandler()
            handler.setFormatter(JsonFormatter())
            setattr(handler, _OWN_HANDLER, True)
            root.addHandler(handler)
        root.setLevel(level)
    else:
        logging.basicConfig(
            level=level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
    _levels(level)


def worker_setup() -> None:
    """Each Ray worker's set-up hook. In JSON, Ray's LoggingConfig (given to ray.init) adds
    the root handler after this hook has run: adding one here would write every line twice."""
    level = os.environ.get("TG_LOG_LEVEL", "INFO").upper()
    install_run_fields()
    if log_format() == "json":
        logging.getLogger().setLevel(level)
        _levels(level)
    else:
        setup()


def serve_driver_json() -> None:
    """The driver's `ray.serve` logger (Serve configures it at import, in text, and keeps it
    apart from the root logger) writes JSON lines too: its handlers get JsonFormatter."""
    for handler in logging.getLogger("ray.serve").handlers:
        handler.setFormatter(JsonFormatter())


def hand_over_to_ray() -> list[logging.Handler]:
    """Remove the driver's own JSON handler before ray.init(logging_config=JSON) adds Ray's,
    so a line is not written twice; the removed handlers (to put back if Ray fails)."""
    root = logging.getLogger()
    own = [h for h in root.handlers if getattr(h, _OWN_HANDLER, False)]
    for handler in own:
        root.removeHandler(handler)
    return own


def take_back(handlers: list[logging.Handler]) -> None:
    """Put back what `hand_over_to_ray` removed (ray.init failed)."""
    root = logging.getLogger()
    for handler in handlers:
        root.addHandler(handler)
