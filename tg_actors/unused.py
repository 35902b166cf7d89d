"""Imports a process of ours never needs, refused before a library makes them.

pyarrow imports pandas (0.2-0.3 s of CPU, ~50 MiB) at its first array only to ask whether the
values are pandas objects; httpx imports its own command line (30 ms: click, pygments). A
refused import raises ModuleNotFoundError, what those importers take as "not installed".
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

UNUSED = frozenset({"pandas", "httpx._main"})


class Unused(importlib.abc.MetaPathFinder):
    """Refuses to import `names` and their submodules."""

    def __init__(self, names: frozenset[str], who: str) -> None:
        self.names, self.who = names, who

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".")[0] in self.names or name in self.names:
            raise ModuleNotFoundError(f"{name} is not used by {self.who}", name=name)
        return None


def refuse(who: str) -> None:
    """Refuse UNUSED in this process from now on (what is imported already stays)."""
    if any(isinstance(finder, Unused) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, Unused(frozenset(UNUSED - sys.modules.keys()), who))
