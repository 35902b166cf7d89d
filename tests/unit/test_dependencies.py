"""`triggers.after` cycles: the pure graph check (tg_actors/config/dependencies.py)."""

from __future__ import annotations

import pytest

from tg_actors.config.dependencies import after_edges, find_cycle, spell


@pytest.mark.parametrize(
    ("edges", "through", "cycle"),
    [
        ({}, None, None),
        ({"a": []}, None, None),
        ({"a": ["b"], "b": ["c"]}, None, None),  # a chain
        ({"a": ["b", "c"], "b": ["d"], "c": ["d"]}, None, None),  # a diamond is no cycle
        ({"a": ["a"]}, None, ["a", "a"]),  # a job after itself
        ({"a": ["b"], "b": ["a"]}, None, ["a", "b", "a"]),
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, None, ["a", "b", "c", "a"]),
        ({"x": ["a"], "a": ["b"], "b": ["a"]}, None, ["a", "b", "a"]),  # reached from outside
        ({"a": ["missing"]}, None, None),  # an edge to an unknown job ends there
        # through: only a cycle that passes this node counts
        ({"a": ["b"], "b": ["a"], "c": ["d"]}, "c", None),
        ({"a": ["b"], "b": ["a"], "c": ["a"]}, "c", None),
        ({"a": ["b"], "b": ["c"], "c": ["b"]}, "c", ["c", "b", "c"]),
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, "b", ["b", "c", "a", "b"]),
        ({"a": ["a"]}, "a", ["a", "a"]),
        ({}, "a", None),
    ],
)
def test_find_cycle(
    edges: dict[str, list[str]], through: str | None, cycle: list[str] | None
) -> None:
    assert find_cycle(edges, through=through) == cycle


def test_find_cycle_is_deterministic_whatever_the_order() -> None:
    one = {"b": ["a"], "a": ["b"], "d": ["c"], "c": ["d"]}
    two = dict(reversed(list(one.items())))
    assert find_cycle(one) == find_cycle(two) == ["a", "b", "a"]


def test_long_cycle_without_recursion_limit() -> None:
    n = 5000  # deeper than Python's recursion limit: the walk is iterative
    edges = {f"j{i}": [f"j{i + 1}"] for i in range(n)}
    edges[f"j{n}"] = ["j0"]
    cycle = find_cycle(edges)
    assert cycle is not None and len(cycle) == n + 2 and cycle[0] == cycle[-1] == "j0"


def test_after_edges_point_from_upstream_to_dependent() -> None:
    # b runs after a, c after a and b: a's success runs b and c, b's success runs c
    edges = after_edges({"a": [], "b": ["a"], "c": ["a", "b"]})
    assert edges == {"a": ["b", "c"], "b": ["c"], "c": []}
    assert find_cycle(after_edges({"a": ["b"], "b": ["a"]})) == ["a", "b", "a"]


def test_spell() -> None:
    assert spell(["a", "b", "a"]) == "a -> b -> a"
