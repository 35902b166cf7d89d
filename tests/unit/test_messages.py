from __future__ import annotations

import pickle

import pytest
from pydantic import ValidationError

from tg_actors.messages import (
    JobUpserted,
    RunFailed,
    RunStateChanged,
    TriggerRun,
    from_wire,
    to_wire,
)


@pytest.mark.parametrize(
    "message",
    [
        TriggerRun(run_id="r1", job="orders", spec={"name": "orders"}, attempt=2, trigger="manual"),
        RunStateChanged(run_id="r1", job="orders", state="running", previous="queued"),
        RunFailed(run_id="r1", job="orders", attempt=2, error="boom", pages=3),
        JobUpserted(name="orders", spec={"name": "orders"}, paused=True),
    ],
)
def test_round_trip_through_the_wire_and_pickle(message: object) -> None:
    assert from_wire(to_wire(message)) == message  # type: ignore[arg-type]
    assert pickle.loads(pickle.dumps(message)) == message


def test_messages_are_frozen_and_strict() -> None:
    message = RunFailed(run_id="r1", job="j", attempt=1, error="e")
    with pytest.raises(ValidationError):
        message.error = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        RunFailed(run_id="r1", job="j", attempt=1, error="e", extra=1)  # type: ignore[call-arg]


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValidationError):
        from_wire({"kind": "nope", "run_id": "r"})
