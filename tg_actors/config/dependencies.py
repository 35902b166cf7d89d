"""`triggers.after` as a graph: a cycle in it would run its jobs back to back forever.

Pure: no I/O, no Ray. Edges point in run order, from a job to the jobs its success triggers
(`b` with `triggers: {after: [a]}` is the edge a -> b), so a cycle reads as it would run:
"a -> b -> a". Walks are iterative (a long chain never meets the recursion limit) and visit
nodes and successors in sorted order, so the cycle reported is the same whatever the order
the jobs came in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def after_edges(after: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """{job: its `triggers.after`} -> {job: jobs run after it}, every name a key."""
    edges: dict[str, set[str]] = {job: set() for job in after}
    for job, upstreams in after.items():
        for upstream in upstreams:
            edges.setdefault(upstream, set()).add(job)
    return {job: sorted(down) for job, down in sorted(edges.items())}


def find_cycle(edges: Mapping[str, Iterable[str]], through: str | None = None) -> list[str] | None:
    """A cycle of `edges` as [first, ..., first], or None. With `through`, only a cycle
    passing that node counts, given starting from it (a cycle elsewhere is not its doing).
    A successor that is not a key has no edges of its own."""
    succ = {node: sorted(set(down)) for node, down in edges.items()}
    if through is not None:
        return _path_back(succ, through)
    done: set[str] = set()
    for root in sorted(succ):
        if root in done:
            continue
        # iterative DFS: the path from root, each node with the successors left to try
        path: list[str] = [root]
        on_path = {root}
        todo = [iter(succ.get(root, ()))]
        while todo:
            nxt = next(todo[-1], None)
            if nxt is None:
                todo.pop()
                done.add(node := path.pop())
                on_path.discard(node)
                continue
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt in done:
                continue
            path.append(nxt)
            on_path.add(nxt)
            todo.append(iter(succ.get(nxt, ())))
    return None


def _path_back(succ: Mapping[str, list[str]], start: str) -> list[str] | None:
    """The first path start -> ... -> start found (DFS, sorted), or None."""
    path = [start]
    seen = {start}
    todo = [iter(succ.get(start, ()))]
    while todo:
        nxt = next(todo[-1], None)
        if nxt is None:
            todo.pop()
            path.pop()
            continue
        if nxt == start:
            return [*path, start]
        if nxt in seen:  # already explored: it does not lead back (or is on this path)
            continue
        seen.add(nxt)
        path.append(nxt)
        todo.append(iter(succ.get(nxt, ())))
    return None


def spell(cycle: list[str]) -> str:
    """["a", "b", "a"] -> "a -> b -> a"."""
    return " -> ".join(cycle)
