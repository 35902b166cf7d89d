"""turbo-giggle: sync HTTP APIs into DuckDB on Ray. `tg_actors.Client` (tg_actors.client) and
`tg_actors.run_job` (tg_actors.localrun, one run without Ray) are imported on first use, so
importing the package stays light."""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "Client":
        from tg_actors.client import Client

        return Client
    if name == "run_job":  # the Ray-free local run (tg_actors.localrun)
        from tg_actors.localrun import run_job

        return run_job
    raise AttributeError(f"module 'tg_actors' has no attribute {name!r}")
