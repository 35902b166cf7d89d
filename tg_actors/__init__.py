"""turbo-giggle: sync HTTP APIs into DuckDB on Ray. `tg_actors.Client` (tg_actors.client) is
imported on first use, so importing the package stays light."""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "Client":
        from tg_actors.client import Client

        return Client
    raise AttributeError(f"module 'tg_actors' has no attribute {name!r}")
