"""The error tree drawn in errors.py is the tree of its classes, and HTTP follows its branches."""

from __future__ import annotations

import inspect
import re

import pytest

from serve.errors import status_of
from tg_actors import errors
from tg_actors.errors import (
    BrokerFull,
    IllegalTransition,
    JobNotFound,
    JobValidationError,
    MissingSecret,
    NoCapacity,
    PeerUnavailable,
    QueryFailed,
    QueryRefused,
    QueryTimeout,
    RunNotFound,
    SourceError,
    StaleAttempt,
    TableNotFound,
    TGError,
    TooManyQueries,
)


def drawn_tree() -> dict[str, str | None]:
    """{class name: parent name} from the module docstring's drawing."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        found = re.match(r"^([│ ├└─]*)([A-Z]\w+)", line)
        if not found or not (found.group(1) or found.group(2) == "TGError"):
            continue
        depth, name = len(found.group(1)) // 4, found.group(2)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def class_tree() -> dict[str, str | None]:
    classes = [
        c
        for _, c in inspect.getmembers(errors, inspect.isclass)
        if issubclass(c, TGError) and c.__module__ == errors.__name__
    ]
    return {c.__name__: (None if c is TGError else c.__bases__[0].__name__) for c in classes}


def test_the_drawing_is_the_class_tree() -> None:
    drawn = drawn_tree()
    assert "TGError" in drawn and len(drawn) > 10  # the drawing was read at all
    assert drawn == class_tree()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (JobNotFound("j"), 404),
        (RunNotFound("r"), 404),
        (TableNotFound("t"), 404),
        (JobValidationError("j", [("name", "bad")]), 422),
        (MissingSecret("X"), 422),
        (IllegalTransition("r", "succeeded", "cancelled"), 409),
        (StaleAttempt("r", 1, 2), 409),
        (NoCapacity("no node"), 503),
        (PeerUnavailable("tg_database", "RayActorError"), 503),
        (BrokerFull("status", "database", 5.0), 503),
        (SourceError("boom"), 500),  # not a client's fault, nor a conflict
        (QueryRefused("INSERT is not read-only"), 422),
        (QueryFailed("Binder Error: no such column"), 422),
        (QueryTimeout(30.0), 408),
        (TooManyQueries(4), 429),  # Unavailable, but the client's own load: not 503
    ],
)
def test_http_status_follows_the_branch(error: TGError, status: int) -> None:
    assert status_of(error) == status
