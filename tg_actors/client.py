"""A Python client for a running `tg up`'s HTTP API, for notebooks and scripts.

    from tg_actors.client import Client
    tg = Client("http://127.0.0.1:8000")          # token from TG_API_TOKEN
    orders = tg.sql("SELECT * FROM orders WHERE id > ?", params=[10])   # a pyarrow.Table
    df = tg.sql_df("SELECT state, count(*) AS n FROM tg.runs GROUP BY state")
    run = tg.trigger("orders")                     # waits until the run ends
    tg.backfill("orders", "2024-01-01", "2024-02-01")  # a range, the live cursor left alone
    tg.refresh("orders")                           # re-read everything, replace the table

Queries go to `POST /api/sql` and come back as an Arrow IPC stream; an answer other than 2xx
raises ApiError with the HTTP status and the API's `detail`. No Ray, no DuckDB here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx

from tg_actors.chains import as_iso
from tg_actors.runstate import TERMINAL

ARROW_STREAM = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
CSV = "text/csv"
_TERMINAL = frozenset(str(state) for state in TERMINAL)


class ApiError(Exception):
    """The API answered with an error: `status` (HTTP) and `detail` (the API's words)."""

    def __init__(self, status: int, detail: str, *, method: str = "", path: str = "") -> None:
        self.status = status
        self.detail = detail
        where = f" ({method} {path})" if method else ""
        super().__init__(f"{status}: {detail}{where}")


class Unreachable(ApiError):
    """No API answered at the URL (status 0): nothing listens there, or the network failed."""


class RunTimeout(TimeoutError):
    """`trigger`, `backfill` or `refresh` with wait=True gave up before the run ended; `run` is
    its last known state."""

    def __init__(self, run: dict[str, Any], timeout: float) -> None:
        self.run = run
        super().__init__(f"run {run.get('run_id')} still {run.get('state')} after {timeout:g}s")


class Client:
    """`Client(url, token)`: `token` defaults to the TG_API_TOKEN environment variable."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        token: str | None = None,
        *,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        token = token if token is not None else os.environ.get("TG_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # --- SQL --------------------------------------------------------------------------------

    def sql_bytes(
        self,
        q: str,
        params: list[Any] | None = None,
        *,
        accept: str = ARROW_STREAM,
        limit: int | None = None,
    ) -> bytes:
        """The raw answer of `POST /api/sql` in the format `accept` names (Arrow stream,
        Parquet, CSV or application/json)."""
        body = {"sql": q, "params": list(params or []), "limit": limit}
        response = self._request("POST", "/api/sql", json=body, headers={"Accept": accept})
        return response.content

    def sql_to_file(
        self,
        q: str,
        path: str | os.PathLike[str],
        params: list[Any] | None = None,
        *,
        accept: str = PARQUET,
        limit: int | None = None,
    ) -> int:
        """Stream the answer of `POST /api/sql` (Parquet by default; CSV, the Arrow stream)
        into `path` as it comes, never whole in memory: written beside it, then renamed into
        place. Returns the bytes written; ApiError as `sql`."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        body = {"sql": q, "params": list(params or []), "limit": limit}
        written = 0
        try:
            with self._http.stream(
                "POST", "/api/sql", json=body, headers={"Accept": accept}
            ) as response:
                if not response.is_success:
                    response.read()
                    raise ApiError(
                        response.status_code, detail_of(response), method="POST", path="/api/sql"
                    )
                with tmp.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        written += len(chunk)
            os.replace(tmp, target)
        except httpx.TransportError as exc:
            raise Unreachable(
                0, f"no turbo-giggle API at {self.url} ({type(exc).__name__}: {exc})"
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)
        return written

    def sql(self, q: str, params: list[Any] | None = None, *, limit: int | None = None) -> Any:
        """One read-only query: the result as a pyarrow.Table."""
        import pyarrow as pa

        data = self.sql_bytes(q, params, accept=ARROW_STREAM, limit=limit)
        with pa.ipc.open_stream(data) as reader:
            return reader.read_all()

    def sql_df(self, q: str, params: list[Any] | None = None, *, limit: int | None = None) -> Any:
        """One read-only query as a DataFrame: polars when installed, else pandas."""
        table = self.sql(q, params, limit=limit)
        try:
            import polars as pl
        except ImportError:
            return table.to_pandas()
        return pl.from_arrow(table)

    # --- jobs and runs ----------------------------------------------------------------------

    def jobs(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self._request("GET", "/api/jobs").json()
        return answer

    def runs(
        self, job: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"limit": limit}
        if job:
            query["job"] = job
        if state:
            query["state"] = state
        answer: list[dict[str, Any]] = self._request("GET", "/api/runs", params=query).json()
        return answer

    def run(self, run_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._request("GET", f"/api/runs/{run_id}").json()
        return answer

    def logs(self, run_id: str) -> list[dict[str, Any]]:
        """The log lines of run `run_id` so far: `[{ts, level, message}]`, oldest first."""
        answer: list[dict[str, Any]] = self._request("GET", f"/api/runs/{run_id}/logs").json()
        return answer

    def events(self, job: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """`GET /api/events` (of `job` only, when given) as (event, data) pairs, as they come,
        for as long as the caller reads (no read timeout: keep-alives come every 15 s). The
        first pair is ("connected", {}): from then on no event is missed."""
        query = {"job": job} if job else {}
        timeout = httpx.Timeout(30.0, read=None)
        try:
            with self._http.stream("GET", "/api/events", params=query, timeout=timeout) as answer:
                if not answer.is_success:
                    answer.read()
                    raise ApiError(
                        answer.status_code, detail_of(answer), method="GET", path="/api/events"
                    )
                event, data = "message", ""
                for line in answer.iter_lines():
                    if line == ": connected":
                        yield "connected", {}
                    elif line.startswith("event:"):
                        event = line.removeprefix("event:").strip()
                    elif line.startswith("data:"):
                        data += line.removeprefix("data:").strip()
                    elif line == "" and data:
                        yield event, json.loads(data)
                        event, data = "message", ""
        except httpx.TransportError as exc:
            raise Unreachable(
                0, f"no turbo-giggle API at {self.url} ({type(exc).__name__}: {exc})"
            ) from exc

    def trigger(
        self, job: str, wait: bool = True, timeout: float = 600.0, every: float = 0.5
    ) -> dict[str, Any]:
        """Queue a run of `job`. `wait`: poll it until it ends (RunTimeout after `timeout`
        seconds) and return the run; else return it as queued."""
        run_id = self._request("POST", f"/api/jobs/{job}/runs").json()["run_id"]
        return self._follow(run_id, wait, timeout, every)

    def backfill(
        self,
        job: str,
        start: datetime | date | str,
        end: datetime | date | str,
        wait: bool = True,
        timeout: float = 600.0,
        every: float = 0.5,
    ) -> dict[str, Any]:
        """Queue a run of `job` over [start, end) that leaves its live cursor alone (a naive
        time or a date alone is UTC; text goes as it is). ApiError 404 for an unknown job,
        422 when the job cannot bound the range (`detail` says why). `wait` as `trigger`."""
        body = {"from": _instant(start), "to": _instant(end)}
        run_id = self._request("POST", f"/api/jobs/{job}/backfill", json=body).json()["run_id"]
        return self._follow(run_id, wait, timeout, every)

    def refresh(
        self, job: str, wait: bool = True, timeout: float = 600.0, every: float = 0.5
    ) -> dict[str, Any]:
        """Queue a full re-read of `job` that replaces its table (and resets its cursor) when
        it succeeds. `wait` as `trigger`."""
        run_id = self._request("POST", f"/api/jobs/{job}/refresh").json()["run_id"]
        return self._follow(run_id, wait, timeout, every)

    def preview(
        self, job: str | dict[str, Any], pages: int = 3, records: int = 5
    ) -> dict[str, Any]:
        """A test read, nothing written: of the stored job named `job`, or of a job given as a
        dict or as YAML text (with a newline), saved or not. ApiError 404 for an unknown name,
        422 for a job that does not validate."""
        query = {"pages": pages, "records": records}
        if isinstance(job, dict):
            response = self._request("POST", "/api/preview", params=query, json=job)
        elif "\n" in job:
            yaml = {"Content-Type": "application/yaml"}
            response = self._request(
                "POST", "/api/preview", params=query, content=job, headers=yaml
            )
        else:
            response = self._request("POST", f"/api/jobs/{job}/preview", params=query)
        answer: dict[str, Any] = response.json()
        return answer

    def wait(self, run_id: str, timeout: float = 600.0, every: float = 0.5) -> dict[str, Any]:
        """Poll run `run_id` until it ends and return it; RunTimeout after `timeout` seconds."""
        return self._follow(run_id, True, timeout, every)

    def _follow(self, run_id: str, wait: bool, timeout: float, every: float) -> dict[str, Any]:
        """The run as queued, or (`wait`) polled until it ends: RunTimeout after `timeout`."""
        run = self.run(run_id)
        deadline = time.monotonic() + timeout
        while wait and run.get("state") not in _TERMINAL:
            if time.monotonic() > deadline:
                raise RunTimeout(run, timeout)
            time.sleep(every)
            run = self.run(run_id)
        return run

    # --- plumbing ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(
                0, f"no turbo-giggle API at {self.url} ({type(exc).__name__}: {exc})"
            ) from exc
        if response.is_success:
            return response
        raise ApiError(response.status_code, detail_of(response), method=method, path=path)


def _instant(moment: datetime | date | str) -> str:
    if isinstance(moment, datetime):
        return as_iso(moment)
    return moment.isoformat() if isinstance(moment, date) else moment


def detail_of(response: httpx.Response) -> str:
    """The API's `detail` of an error answer (pydantic's list of errors joined), else its text."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text or response.reason_phrase
    if isinstance(detail, list):  # pydantic's errors
        return "; ".join(
            f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}"
            if isinstance(d, dict)
            else str(d)
            for d in detail
        )
    return str(detail)
