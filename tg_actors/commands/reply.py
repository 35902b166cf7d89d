"""A command's answer: what the broker's reply mailbox carries back to the API, and how it is
kept in `tg.commands` so that the same command sent again gets the same answer.

`Reply.value` is JSON-able (a run id, {"created": true}); `Reply.error` one of our errors
(tg_actors/errors.py), which the HTTP layer turns into today's status codes and bodies. An
answer is *final* when sending the command again could not change it: it was applied, or it
was refused for what it says (invalid, not found, a conflict). An error of the system (the
Database restarting) is not final: the command sent again is tried again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tg_actors import errors
from tg_actors.errors import ConfigError, Conflict, NotFound, TGError
from tg_actors.interfaces import Answered, Received
from tg_actors.redaction import mask_text

OUTCOME_CHARS = 500  # an error's text in the audit log, at most
__all__ = ["Answered", "Received", "Reply", "from_json", "refused", "to_json"]


@dataclass(frozen=True)
class Reply:
    command_id: str
    value: Any = None
    error: BaseException | None = None
    job: str | None = None  # the job it was about, when the command did not say (a cancel)
    outcome: str = ""  # what the audit log says it did ("created", "run 3f2a…", "refused: …")
    fingerprint: str = ""  # of the command it answers (desk.fingerprint): a reused id tells

    @property
    def final(self) -> bool:
        return self.error is None or isinstance(self.error, ConfigError | NotFound | Conflict)

    def result(self) -> Any:
        """The value, or the error raised."""
        if self.error is not None:
            raise self.error
        return self.value


def refused(command_id: str, error: BaseException, job: str | None = None) -> Reply:
    text = mask_text(f"{type(error).__name__}: {error}")
    if len(text) > OUTCOME_CHARS:
        text = text[: OUTCOME_CHARS - 1] + "…"
    return Reply(command_id, error=error, job=job, outcome=f"refused: {text}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def to_json(reply: Reply) -> str:
    """The reply as kept in tg.commands.reply."""
    body: dict[str, Any] = {
        "outcome": reply.outcome,
        "job": reply.job,
        "fingerprint": reply.fingerprint,
    }
    if reply.error is None:
        body["value"] = _jsonable(reply.value)
    else:
        error = reply.error
        body["error"] = {
            "type": type(error).__name__,
            "args": _jsonable(error.args),
            "state": _jsonable(vars(error)),
        }
    return orjson.dumps(body).decode()


def from_json(command_id: str, text: str) -> Reply:
    """A reply kept by `to_json`; its error rebuilt as the class it was (one of ours)."""
    body = orjson.loads(text)
    error: BaseException | None = None
    if "error" in body:
        data = body["error"]
        cls = getattr(errors, data["type"], None)
        if not (isinstance(cls, type) and issubclass(cls, TGError)):
            cls = TGError
        error = errors._rebuild(cls, tuple(data["args"]), dict(data["state"]))
    return Reply(
        command_id,
        value=body.get("value"),
        error=error,
        job=body.get("job"),
        outcome=str(body.get("outcome", "")),
        fingerprint=str(body.get("fingerprint", "")),
    )
