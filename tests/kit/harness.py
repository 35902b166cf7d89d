"""`tg up` for the e2e and cluster tests: start it on a free port, wait until it is up, talk
to its API, stop it, and list a DuckDB file's tables (built on tests/kit/cli.py)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import duckdb
import httpx

from tests.kit.cli import (
    EXIT_TIMEOUT,
    UP_TIMEOUT,
    Proc,
    alive,
    describe,
    poll,
    psutil,
    started,
    tg,
    tg_env,
)

ENDED = {"succeeded", "failed", "cancelled", "skipped"}


class TgUp:
    """A started `tg up`: its process, base URL, API token and an authorised client."""

    def __init__(self, proc: Proc, port: int, token: str, token_file: Path, up_s: float) -> None:
        self.proc, self.port, self.token, self.token_file, self.up_s = (
            proc,
            port,
            token,
            token_file,
            up_s,
        )
        self.base = f"http://127.0.0.1:{port}"
        self.auth = {"Authorization": f"Bearer {token}"}
        self.client = httpx.Client(base_url=self.base, timeout=30.0, headers=self.auth)

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def trigger(self, job: str) -> str:
        response = self.client.post(f"/api/jobs/{job}/runs")
        assert response.status_code == 202, response.text
        return str(response.json()["run_id"])

    def wait_ended(self, run_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Each run's record once every one has ended."""

        def ended() -> dict[str, dict[str, Any]] | None:
            runs = {r: self.get(f"/api/runs/{r}") for r in run_ids}
            return runs if all(run["state"] in ENDED for run in runs.values()) else None

        return poll(f"runs {run_ids} ended", ended, timeout, every=0.5)  # type: ignore[no-any-return]

    def wait_state(self, run_id: str, state: str, timeout: float) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            run: dict[str, Any] = self.get(f"/api/runs/{run_id}")
            return run if run["state"] == state else None

        return poll(f"run {run_id} {state}", reached, timeout, every=0.2)  # type: ignore[no-any-return]

    def tree(self) -> list[psutil.Process]:
        """The tg process and every live descendant (Ray's processes), recorded as seen."""
        self.proc.record_descendants()
        procs = [psutil.Process(self.proc.pid), *self.proc.descendants.values()]
        return [p for p in procs if alive(p)]

    def stop(self) -> float:
        """SIGINT, a clean exit and no process left behind; seconds it took."""
        self.client.close()
        self.proc.record_descendants()
        began = time.monotonic()
        self.proc.popen.send_signal(signal.SIGINT)
        rc = self.proc.wait(EXIT_TIMEOUT)
        took = time.monotonic() - began
        assert rc == 0, f"exit code {rc}:\n{self.proc.output}"
        assert "stopped; DuckDB closed cleanly." in self.proc.lines, self.proc.output
        with suppress(AssertionError):
            poll(
                "Ray processes gone",
                lambda: not any(alive(p) for p in self.proc.descendants.values()),
                10,
                every=0.25,
            )
        left = {pid: describe(p) for pid, p in self.proc.descendants.items() if alive(p)}
        assert not left, f"processes left behind: {left}"
        return took


def up_command(configs: Path, db: Path, port: int, *extra: str) -> list[str]:
    return tg(
        "up", "--configs", str(configs), "--db", str(db), "--host", "127.0.0.1",
        "--port", str(port), *extra,
    )  # fmt: skip


@contextmanager
def tg_up(
    configs: Path,
    db: Path,
    port: int,
    cwd: Path,
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
    timeout: float = UP_TIMEOUT,
) -> Iterator[TgUp]:
    """`tg up` until it says it is up and /api/health is ok; killed by PID if the block fails."""
    with started(up_command(configs, db, port, *extra), env or tg_env(port), cwd) as proc:
        yield boot(proc, port, timeout)


def boot(proc: Proc, port: int, timeout: float = UP_TIMEOUT) -> TgUp:
    up = proc.wait_for_line(r"turbo-giggle is up in ([\d.]+)s", timeout)
    token_file = Path(proc.wait_for_line(r"^\s+token:\s+(.+)$", 5)[1].strip())
    token = token_file.read_text(encoding="utf-8").strip()
    server = TgUp(proc, port, token, token_file, float(up[1]))

    def healthy() -> bool:
        body = httpx.get(f"{server.base}/api/health", timeout=10).json()
        return bool(body.get("status") == "ok")

    poll("GET /api/health ok", healthy, 30, every=0.5)
    return server


def db_tables(con: duckdb.DuckDBPyConnection, schemas: tuple[str, ...]) -> list[tuple[str, str]]:
    rows = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()"
        " AND schema_name IN (SELECT unnest(?)) ORDER BY ALL",
        [list(schemas)],
    ).fetchall()
    return [(str(s), str(t)) for s, t in rows]
