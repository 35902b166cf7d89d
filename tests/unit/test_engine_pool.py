"""The pure parts of run-time engine scaling: which engines a scale adds or removes, and what
`tg engines` prints and where it connects."""

from __future__ import annotations

import pytest

from tg_actors.cli.engines import base_url, render
from tg_actors.engine.pool import engine_id, engine_name, plan_scale
from tg_actors.names import MAX_ENGINES
from tg_actors.settings import Settings


@pytest.mark.parametrize(
    ("current", "target", "plan"),
    [
        ([], 2, ([0, 1], [])),
        ([0, 1], 2, ([], [])),
        ([0, 1], 4, ([2, 3], [])),
        ([0, 1, 2, 3], 1, ([], [3, 2, 1])),  # the newest go first
        ([0, 2, 5], 5, ([1, 3], [])),  # gaps are filled first
        ([0, 2, 5], 2, ([], [5])),
        ([3], 1, ([], [])),
    ],
)
def test_plan_scale(current: list[int], target: int, plan: tuple[list[int], list[int]]) -> None:
    assert plan_scale(current, target) == plan


@pytest.mark.parametrize("target", [0, -1, MAX_ENGINES + 1])
def test_plan_scale_refuses_counts_out_of_range(target: int) -> None:
    with pytest.raises(ValueError, match=f"between 1 and {MAX_ENGINES}"):
        plan_scale([0], target)


def test_engine_names_and_ids_follow_the_index() -> None:
    assert (engine_name(7), engine_id(7)) == ("tg_engine_7", "engine-7")


def test_base_url_reaches_a_wildcard_bind_on_loopback() -> None:
    assert base_url(Settings(host="0.0.0.0", port=8123), None) == "http://127.0.0.1:8123"
    assert base_url(Settings(), "http://10.0.0.5:8000/") == "http://10.0.0.5:8000"


def test_render_shows_each_engine_its_node_and_what_changed() -> None:
    answer = {
        "count": 2,
        "nodes": 2,
        "capacity": 16,
        "running": 3,
        "queue_depth": 4,
        "engines": [
            {
                "name": "tg_engine_0",
                "state": "up",
                "node_ip": "10.0.0.1",
                "node_id": "abcdef1234",
                "slots": 8,
                "current_runs": ["r1", "r2", "r3", "r4"],
            },
            {"name": "tg_engine_1", "state": "unavailable", "error": "GetTimeoutError"},
        ],
        "added": ["tg_engine_1"],
        "interrupted": ["r9"],
    }
    lines = render(answer)
    assert lines[1].split()[:4] == ["tg_engine_0", "up", "10.0.0.1", "abcdef12"]
    assert lines[1].endswith("r1, r2, r3 …")
    assert lines[2].split()[:2] == ["tg_engine_1", "unavailable"]
    assert "2 engine(s) on 2 node(s): capacity 16 runs at once; 3 running, 4 queued" in lines
    assert "added: tg_engine_1" in lines
    assert any(line.startswith("1 run(s) did not end") and "r9" in line for line in lines)


def test_joining_a_cluster_without_a_db_node_says_how_to_declare_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    from tg_actors import runtime

    # the one thing not run for real: a second Ray cluster without `db` costs ~10 s to start
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})
    with pytest.raises(RuntimeError, match="declares the custom resource 'db'") as info:
        runtime.check_db_node()
    assert """ray start --head --resources='{"db": 1}'""" in str(info.value)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0, "db": 1.0})
    runtime.check_db_node()


def test_a_ray_client_whose_server_fails_at_birth_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    from tg_actors import runtime

    # mocked: the Ray Client server's start-up failure cannot be caused on demand
    calls: list[str] = []

    def init(address: str, **_options: object) -> None:
        calls.append(address)
        if len(calls) < 3 or address.startswith("127."):
            raise ConnectionAbortedError("Initialization failure from server:\nZombieProcess")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(runtime.time, "sleep", lambda _s: None)
    runtime._join("ray://127.0.0.1:10001", {})
    assert calls == ["ray://127.0.0.1:10001"] * 3
    calls.clear()
    with pytest.raises(ConnectionAbortedError):  # a plain GCS address: no second try
        runtime._join("127.0.0.1:6379", {})
    assert calls == ["127.0.0.1:6379"]
