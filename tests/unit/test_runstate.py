from __future__ import annotations

import itertools

import pytest

from tg_actors.errors import IllegalTransition
from tg_actors.runstate import (
    ACTIVE,
    INITIAL,
    TERMINAL,
    TRANSITIONS,
    RunState,
    can_transition,
    check_transition,
)

Q, R, RT = RunState.QUEUED, RunState.RUNNING, RunState.RETRYING
S, F, C, K = RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.SKIPPED

# the whole table, written out independently of the module
LEGAL = {
    (Q, R), (Q, C), (Q, F), (Q, K),
    (R, S), (R, F), (R, C), (R, RT), (R, Q),
    (RT, Q), (RT, C), (RT, F), (RT, S),
}  # fmt: skip

ALL_PAIRS = list(itertools.product(RunState, RunState))


def test_values_are_the_contract_names() -> None:
    assert [s.value for s in RunState] == [
        "queued", "running", "retrying", "succeeded", "failed", "cancelled", "skipped"
    ]  # fmt: skip


def test_state_sets() -> None:
    assert INITIAL == {Q, K}
    assert TERMINAL == {S, F, C, K}
    assert ACTIVE == {Q, R, RT}
    assert ACTIVE | TERMINAL == set(RunState)
    assert not ACTIVE & TERMINAL


def test_table_covers_every_state_and_terminal_states_are_final() -> None:
    assert set(TRANSITIONS) == set(RunState)
    for state in TERMINAL:
        assert TRANSITIONS[state] == frozenset()


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TRANSITIONS[Q] = frozenset()  # type: ignore[index]


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=lambda s: s.value)
def test_every_pair(current: RunState, target: RunState) -> None:
    legal = (current, target) in LEGAL
    assert can_transition(current, target) is legal
    assert can_transition(current.value, target.value) is legal
    if legal:
        assert check_transition("r1", current, target) is target
        assert check_transition("r1", current.value, target.value) is target
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition("r1", current, target)
        assert (info.value.run_id, info.value.current, info.value.target) == (
            "r1",
            current.value,
            target.value,
        )


def test_same_state_is_illegal() -> None:
    for state in RunState:
        assert not can_transition(state, state)


def test_message_names_run_and_states() -> None:
    with pytest.raises(IllegalTransition, match="run abc: cannot go from 'succeeded' to 'running'"):
        check_transition("abc", S, R)


@pytest.mark.parametrize(("current", "target"), [("bogus", "running"), ("queued", "done")])
def test_unknown_names_are_illegal(current: str, target: str) -> None:
    assert not can_transition(current, target)
    with pytest.raises(IllegalTransition):
        check_transition("r1", current, target)
