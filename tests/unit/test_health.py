"""GET /api/health through the real FastAPI app and ApiService, over fake actors (Ray-free):
503 "starting" until every actor has booted and the Scheduler has engine slots, then 200
"ok"; a component down later is 503 "degraded". (tests/e2e/test_startup.py checks the same
against a real `tg up`.)"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.testclient import TestClient

from serve.routes.api import build_api
from serve.service import ApiService
from tg_actors.names import BROKER, CONFIG, DATABASE, POOL, SCHEDULER

TOKEN = "health-test-token-0123456789"


class Method:
    def __init__(self, actor: FakeActor, name: str) -> None:
        self.actor, self.name = actor, name

    def remote(self, *_args: Any) -> Any:
        return self.actor.call(self.name)


class FakeActor:
    """`booted`: start() answers (else it hangs, as a boot still going on); `dead`: every
    call raises (as a dead actor's would)."""

    def __init__(self, **answers: Any) -> None:
        self.booted = True
        self.dead = False
        self.answers = answers

    def __getattr__(self, name: str) -> Method:
        return Method(self, name)

    async def call(self, name: str) -> Any:
        if self.dead:
            raise RuntimeError("the actor died")
        if name in ("start", "ping") and not self.booted:
            await asyncio.sleep(3600)
        return self.answers.get(name, "ok")


class Service(ApiService):
    def __init__(self) -> None:
        super().__init__("ns")
        self.boot_wait = 0.05
        self.actors: dict[str, FakeActor] = {}

    def _lookup(self, name: str) -> Any:
        if name not in self.actors:
            raise ValueError(f"no actor {name}")
        return self.actors[name]


def health(client: TestClient) -> tuple[int, str, dict[str, str]]:
    response = client.get("/api/health")
    body = response.json()
    return response.status_code, body["status"], body["components"]


def test_health_is_starting_until_every_actor_booted_then_ok_then_degraded() -> None:
    service = Service()
    client = TestClient(build_api(service, TOKEN))
    # nothing made yet (Serve starts first)
    code, status, components = health(client)
    assert (code, status) == (503, "starting")
    assert set(components.values()) == {"starting"}
    assert set(components) == {"broker", "database", "config_manager", "scheduler", "engines"}
    # the actors exist; the Database and the Scheduler still boot; no engine yet
    for name in (BROKER, CONFIG, DATABASE, POOL):
        service.actors[name] = FakeActor(names=[])
    service.actors[DATABASE].booted = False
    service.actors[SCHEDULER] = FakeActor(status={"slots": 0})
    service.actors[SCHEDULER].booted = False
    code, status, components = health(client)
    assert (code, status) == (503, "starting")
    assert components["database"] == components["scheduler"] == "starting"
    assert components["broker"] == components["config_manager"] == "alive"
    assert components["engines"] == "starting"  # none yet
    # booted, an engine that has not booted yet
    service.actors[DATABASE].booted = service.actors[SCHEDULER].booted = True
    service.actors[POOL].answers["names"] = ["tg_engine_0"]
    service.actors["tg_engine_0"] = FakeActor()
    service.actors["tg_engine_0"].booted = False
    assert health(client)[:2] == (503, "starting")
    # every engine booted, but the Scheduler has no slots yet: a run would not be taken
    service.actors["tg_engine_0"].booted = True
    code, status, components = health(client)
    assert (code, status, components["scheduler"]) == (503, "starting", "starting")
    assert components["engines"] == "alive"
    # slots: ok
    service.actors[SCHEDULER].answers["status"] = {"slots": 8}
    code, status, components = health(client)
    assert (code, status) == (200, "ok") and set(components.values()) == {"alive"}
    # later, the Scheduler dies: degraded, not "starting" again
    service.actors[SCHEDULER].dead = True
    code, status, components = health(client)
    assert (code, status, components["scheduler"]) == (503, "degraded", "dead")
    service.actors[SCHEDULER].dead = False
    assert health(client)[:2] == (200, "ok")
    del service.actors[CONFIG]  # gone by name after start-up: dead
    service._handles.pop(CONFIG, None)
    code, status, components = health(client)
    assert (code, status, components["config_manager"]) == (503, "degraded", "dead")
