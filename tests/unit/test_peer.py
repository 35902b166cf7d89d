"""face(): a typed face on an actor handle, the one place Ray's errors become ours."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ray.exceptions import RayActorError, RayTaskError

from tg_actors import interfaces
from tg_actors.errors import PeerUnavailable, RunNotFound
from tg_actors.peer import face


class Method:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))

        async def answer() -> Any:
            if isinstance(self.outcome, BaseException):
                raise self.outcome
            return self.outcome

        return answer()


class Handle:
    name = "tg_database"

    def __init__(self, **methods: Method) -> None:
        self.methods = methods

    def __getattr__(self, attr: str) -> Method:
        return self.methods[attr]


def test_a_call_passes_its_arguments_and_returns_the_answer() -> None:
    get_run = Method({"run_id": "r1"})
    db: interfaces.Database = face(Handle(get_run=get_run))
    assert asyncio.run(db.get_run("r1")) == {"run_id": "r1"}
    list_runs = Method([])
    db = face(Handle(list_runs=list_runs))
    asyncio.run(db.list_runs(job="j", limit=3))
    assert list_runs.calls == [((), {"job": "j", "limit": 3})]


def test_an_error_the_actor_raised_comes_out_as_itself() -> None:
    wrapped = RayTaskError("get_run", "Traceback ...", RunNotFound("r9"))
    db: interfaces.Database = face(Handle(get_run=Method(wrapped)))
    with pytest.raises(RunNotFound, match="r9") as caught:
        asyncio.run(db.get_run("r9"))
    assert not isinstance(caught.value, RayTaskError)


def test_an_actor_down_is_peer_unavailable_naming_it() -> None:
    db: interfaces.Database = face(Handle(open_runs=Method(RayActorError())))
    with pytest.raises(PeerUnavailable, match="tg_database is unavailable"):
        asyncio.run(db.open_runs())


def test_private_names_are_not_forwarded() -> None:
    with pytest.raises(AttributeError):
        face(Handle())._secret  # noqa: B018
