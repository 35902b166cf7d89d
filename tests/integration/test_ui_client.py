"""The Gradio UI over real HTTP, driven by gradio_client, against an in-memory FakeApi that
implements ui.api.UiApi (no Ray): every client endpoint reaches the API as it should."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from tests.kit.ui import ui_over
from tg_actors.errors import (
    BackfillRefused,
    IllegalTransition,
    JobNotFound,
    JobValidationError,
    NoCapacity,
    RunNotFound,
)
from ui import data as uidata
from ui import engine_format as efmt
from ui import format as fmt

pytestmark = [pytest.mark.slow]

ENDED = {"succeeded", "failed", "cancelled", "skipped"}


def run(
    run_id: str, job: str, state: str, rows: int = 0, finished: str | None = None
) -> dict[str, Any]:
    return {
        "run_id": run_id, "job": job, "state": state, "trigger": "manual", "attempt": 1,
        "scheduled_for": "2024-05-01T10:00:00+00:00", "queued_at": "2024-05-01T10:00:00+00:00",
        "started_at": "2024-05-01T10:00:01+00:00", "finished_at": finished, "rows_loaded": rows,
        "pages": 1, "error": None,
    }  # fmt: skip


def engine(index: int, node: str, runs: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "name": f"tg_engine_{index}", "engine": f"engine-{index}", "state": "up",
        "node_id": node * 56, "node_ip": f"10.0.0.{ord(node) - ord('a') + 1}", "pid": 100 + index,
        "slots": 8, "runs_done": index, "current_runs": list(runs),
    }  # fmt: skip


class FakeApi:
    """UiApi in memory: jobs as YAML text, runs, logs, one table, engines on two nodes;
    records what it was asked."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.jobs: dict[str, str] = {
            "orders": "name: orders\nschedule: {interval: 30s}\nsource:\n  url: http://x/orders\n"
            "  auth: {type: bearer, token: '***'}\ndestination: {table: orders}\n",
            "customers": "name: customers\nsource: {url: 'http://x/c'}\ndestination: {table: c}\n",
        }
        self.paused: set[str] = set()
        self.runs = [
            run("r2", "orders", "running"),
            run("r1", "orders", "succeeded", 3, "2024-05-01T10:00:05+00:00"),
        ]
        self.logs = {
            "r1": [{"ts": "2024-05-01T10:00:02+00:00", "level": "INFO", "message": "page 1"}]
        }
        self.triggered: list[str] = []
        self.backfills: list[tuple[str, datetime, datetime]] = []
        self.refreshed: list[str] = []
        self.engine_list = [engine(0, "a", ("r2",)), engine(1, "b"), engine(2, "a", ("r9",))]
        self.room = 4  # the most engines the fake cluster can place
        self.scaled: list[tuple[int, float | None]] = []
        self.engines_error: Exception | None = None
        self.sql_limits: list[int | None] = []  # the `limit` of each sql call

    @staticmethod
    def _parse(body: str) -> dict[str, Any]:
        try:
            data = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise JobValidationError("job", [("", f"not YAML: {exc}")]) from None
        errors = []
        if not isinstance(data, dict):
            raise JobValidationError("job", [("", "a job is a mapping")])
        if "source" not in data:
            errors.append(("source", "Field required"))
        interval = (data.get("schedule") or {}).get("interval")
        if interval is not None and not str(interval)[:-1].isdigit():
            errors.append(("schedule.interval", f"not a duration: {interval!r}"))
        if errors:
            raise JobValidationError("job", errors)
        return data

    async def list_jobs(self) -> list[dict[str, Any]]:
        out = []
        for name, body in sorted(self.jobs.items()):
            data = self._parse(body)
            last = next((r for r in self.runs if r["job"] == name), None)
            out.append(
                {"name": name, "enabled": True, "paused": name in self.paused,
                 "schedule": data.get("schedule"), "next_run_at": None, "last_run": last}
            )  # fmt: skip
        return out

    async def job_yaml(self, name: str) -> str:
        if name not in self.jobs:
            raise JobNotFound(name)
        return self.jobs[name]

    async def validate_job(self, body: str) -> dict[str, Any]:
        return self._parse(body)

    async def put_job(self, name: str, body: str) -> tuple[bool, dict[str, Any]]:
        data = self._parse(body)
        created = name not in self.jobs
        self.jobs[name] = body
        return created, data

    async def delete_job(self, name: str) -> None:
        if self.jobs.pop(name, None) is None:
            raise JobNotFound(name)

    async def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        if name not in self.jobs:
            raise JobNotFound(name)
        (self.paused.add if paused else self.paused.discard)(name)
        return {"name": name, "paused": paused}

    async def trigger(self, name: str, priority: int | None = None) -> str:
        if name not in self.jobs:
            raise JobNotFound(name)
        run_id = f"r{len(self.runs) + 1}"
        self.runs.insert(0, run(run_id, name, "queued"))
        self.triggered.append(name)
        return run_id

    async def backfill(self, name: str, start: datetime, end: datetime) -> str:
        if name not in self.jobs:
            raise JobNotFound(name)
        if name == "customers":  # no window and no until_param
            raise BackfillRefused(
                "job customers has no source.window and no source.incremental.until_param: a"
                " backfill could not bound its range"
            )
        self.backfills.append((name, start, end))
        run_id = f"b{len(self.backfills)}"
        self.runs.insert(0, run(run_id, name, "queued"))
        return run_id

    async def refresh(self, name: str) -> str:
        if name not in self.jobs:
            raise JobNotFound(name)
        self.refreshed.append(name)
        run_id = f"f{len(self.refreshed)}"
        self.runs.insert(0, run(run_id, name, "queued"))
        return run_id

    async def cancel(self, run_id: str) -> str:
        found = await self.get_run(run_id)
        if found is None:
            raise RunNotFound(run_id)
        if found["state"] in ENDED:
            raise IllegalTransition(run_id, found["state"], "cancelled")
        found["state"] = "cancelled"
        return "cancelled"

    async def list_runs(
        self, job: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        chosen = [r for r in self.runs if job in (None, r["job"]) and state in (None, r["state"])]
        return chosen[:limit]

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        return next((r for r in self.runs if r["run_id"] == run_id), None)

    async def run_logs(self, run_id: str) -> list[dict[str, Any]] | None:
        return None if await self.get_run(run_id) is None else self.logs.get(run_id, [])

    async def list_tables(self) -> list[dict[str, Any]]:
        columns = [{"name": "id", "type": "BIGINT"}, {"name": "amount", "type": "DOUBLE"}]
        return [{"name": "orders", "rows": 3, "columns": columns}]

    async def sql(
        self, sql: str, params: list[Any] | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        assert sql == 'SELECT * FROM "orders"', sql  # the Data tab's preview, the one query
        self.sql_limits.append(limit)
        columns = [{"name": "id", "type": "BIGINT"}, {"name": "amount", "type": "DOUBLE"}]
        rows = [[1, 1.5], [2, 2.5], [3, 3.5]][:limit]
        return {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": False}

    async def run_stats(self) -> dict[str, Any]:
        by_state: dict[str, int] = {}
        for r in self.runs:
            by_state[r["state"]] = by_state.get(r["state"], 0) + 1
        loaded = [
            {"finished_at": r["finished_at"], "job": r["job"], "rows": r["rows_loaded"]}
            for r in self.runs
            if r["state"] == "succeeded"
        ]
        return {"by_state": by_state, "loaded": loaded}

    async def engines(self) -> dict[str, Any]:
        if self.engines_error is not None:
            raise self.engines_error
        return {
            "count": len(self.engine_list),
            "capacity": sum(e.get("slots", 0) for e in self.engine_list),
            "running": sum(len(e.get("current_runs", [])) for e in self.engine_list),
            "queue_depth": 2,
            "nodes": len({e["node_id"] for e in self.engine_list if e.get("node_id")}),
            "engines": [dict(e) for e in self.engine_list],
        }

    async def scale_engines(self, count: int, grace: float | None = None) -> dict[str, Any]:
        self.scaled.append((count, grace))
        if not 1 <= count <= 256:
            raise ValueError(f"engine count must be between 1 and 256, not {count}")
        have = len(self.engine_list)
        if count > self.room:
            raise NoCapacity(
                f"could not start {count - have} more engine(s): add nodes or ask for fewer"
            )
        added = [engine(i, "ab"[i % 2]) for i in range(have, count)]
        removed = self.engine_list[count:][::-1]  # the newest go first
        self.engine_list = self.engine_list[:count] + added
        return {
            **(await self.engines()),
            "added": [e["name"] for e in added],
            "removed": [e["name"] for e in removed],
            "interrupted": [run_id for e in removed for run_id in e["current_runs"]],
        }


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeApi, Any]]:
    fake = FakeApi()
    with ui_over(fake) as client:
        yield fake, client


@pytest.fixture(autouse=True)
def fresh_fake(served: tuple[FakeApi, Any]) -> None:
    served[0].reset()


def test_refresh_returns_jobs_and_runs(served: tuple[FakeApi, Any]) -> None:
    _, client = served
    jobs, runs = client.predict(api_name="/refresh")
    assert jobs["headers"] == fmt.JOB_COLUMNS
    rows = {row[0]: row for row in jobs["data"]}
    assert set(rows) >= {"orders", "customers"}
    assert rows["orders"][3] == "interval 30s" and rows["orders"][5] == "running"
    assert rows["customers"][3] == "manual" and rows["customers"][5] == ""
    assert any(row[1] == "orders" and row[2] == "succeeded" for row in runs["data"])


def test_validate_shows_errors_by_field_path(served: tuple[FakeApi, Any]) -> None:
    _, client = served
    bad = "name: broken\nschedule: {interval: soon}\ndestination: {table: t}\n"
    status, errors = client.predict(bad, api_name="/validate")
    assert "2 error" in status
    assert errors["headers"] == fmt.ERROR_COLUMNS
    assert {(row[0], row[1]) for row in errors["data"]} == {
        ("source", "Field required"),
        ("schedule.interval", "not a duration: 'soon'"),
    }
    status, errors = client.predict(fmt.JOB_TEMPLATE, api_name="/validate")
    assert status.startswith("Valid") and "my_job" in status
    assert errors["data"] in ([], [["", ""]])


def test_save_stores_a_valid_job_and_refuses_an_invalid_one(served: tuple[FakeApi, Any]) -> None:
    fake, client = served
    body = "name: fresh\nsource: {url: 'http://x/f'}\ndestination: {table: f}\n"
    status, _, selected = client.predict(fmt.NEW_JOB, body, api_name="/save")
    assert status == "Created job 'fresh'." and selected == "fresh"
    assert fake.jobs["fresh"] == body
    status, _, _ = client.predict("fresh", body, api_name="/save")
    assert status == "Saved job 'fresh'."
    status, errors, _ = client.predict(fmt.NEW_JOB, "name: nope\n", api_name="/save")
    assert "error" in status and [row[0] for row in errors["data"]] == ["source"]
    assert "nope" not in fake.jobs
    assert client.predict("fresh", api_name="/load_job")[0] == body.strip()  # gr.Code strips
    status, selected, text = client.predict("fresh", api_name="/delete_job")
    assert "Deleted" in status and selected == fmt.NEW_JOB and text == fmt.JOB_TEMPLATE.strip()
    assert "fresh" not in fake.jobs


def test_run_now_pause_resume_call_the_api(served: tuple[FakeApi, Any]) -> None:
    fake, client = served
    status = client.predict("customers", api_name="/run_now")
    assert fake.triggered[-1] == "customers" and "Queued run" in status
    assert (
        "customers" in client.predict("customers", api_name="/pause") and "customers" in fake.paused
    )
    client.predict("customers", api_name="/resume")
    assert "customers" not in fake.paused
    assert client.predict("ghost", api_name="/run_now") == "Error: No job named 'ghost'"
    assert client.predict(None, api_name="/run_now") == "Pick a job first."


def test_backfill_sends_the_range_as_utc_and_says_the_run(served: tuple[FakeApi, Any]) -> None:
    fake, client = served
    status = client.predict(
        "orders", "2024-05-01", "2024-05-02T06:00:00+02:00", api_name="/backfill"
    )
    assert status == (
        "Queued backfill run b1 of job 'orders' over [2024-05-01T00:00:00Z, 2024-05-02T04:00:00Z)."
    )
    assert fake.backfills == [
        ("orders", datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 5, 2, 4, tzinfo=UTC))
    ]
    assert fake.backfills[0][2].utcoffset() is not None
    client.predict("orders", "2024-05-03T10:00", "2024-05-04", api_name="/backfill")
    assert fake.backfills[-1][1] == datetime(2024, 5, 3, 10, tzinfo=UTC)  # naive: UTC


def test_backfill_errors_are_plain_status_lines(served: tuple[FakeApi, Any]) -> None:
    fake, client = served
    refused = client.predict("customers", "2024-05-01", "2024-05-02", api_name="/backfill")
    assert refused == (
        "Error: job customers has no source.window and no source.incremental.until_param: a"
        " backfill could not bound its range"
    )
    assert client.predict("ghost", "2024-05-01", "2024-05-02", api_name="/backfill") == (
        "Error: No job named 'ghost'"
    )
    forms = {
        (None, "2024-05-01", "2024-05-02"): "Pick a job first.",
        ("orders", "", "2024-05-02"): "Enter From and To (an ISO date or datetime) to backfill.",
        ("orders", "2024-05-01", " "): "Enter From and To (an ISO date or datetime) to backfill.",
        ("orders", "last week", "2024-05-02"): "From 'last week' is not an ISO date or datetime.",
        ("orders", "2024-05-01", "soon"): "To 'soon' is not an ISO date or datetime.",
    }
    for args, message in forms.items():
        assert client.predict(*args, api_name="/backfill") == message
    assert fake.backfills == []  # nothing refused here reached the API as a run


def test_full_refresh_needs_the_box_ticked(served: tuple[FakeApi, Any]) -> None:
    fake, client = served
    unticked = client.predict("orders", False, api_name="/full_refresh")
    assert unticked == "Tick 'I understand the table is replaced' first: nothing was queued."
    assert fake.refreshed == []
    assert client.predict("orders", True, api_name="/full_refresh") == (
        "Queued full refresh run f1 of job 'orders': its table is replaced when the run succeeds."
    )
    assert fake.refreshed == ["orders"]
    assert client.predict("ghost", True, api_name="/full_refresh") == "Error: No job named 'ghost'"
    assert client.predict(None, True, api_name="/full_refresh") == "Pick a job first."
    ids = {c.get("props", {}).get("elem_id") for c in client.config["components"]}
    assert {"backfill-from", "backfill-to", "backfill", "refresh-confirm", "full-refresh",
            "refresh"} <= ids  # fmt: skip
    jobs, _ = client.predict(api_name="/refresh")  # the list reload is still there
    assert {row[0] for row in jobs["data"]} >= {"orders", "customers"}


def test_runs_filters_detail_logs_and_cancel(served: tuple[FakeApi, Any]) -> None:
    _, client = served
    runs = client.predict("orders", "succeeded", api_name="/runs")
    assert [row[0] for row in runs["data"]] == ["r1"]
    detail, logs, status = client.predict("r1", api_name="/run_detail")
    fields = {row[0]: row[1] for row in detail["data"]}
    assert fields["state"] == "succeeded" and fields["rows_loaded"] == "3"
    assert set(fmt.RUN_FIELDS) <= set(fields)
    assert logs["data"] == [["2024-05-01 10:00:02Z", "INFO", "page 1"]]
    assert status == "Run r1: succeeded."
    ended = client.predict("r1", api_name="/cancel_run")
    assert ended == "Run r1 already ended (succeeded): nothing to cancel."
    assert "cancel requested" in client.predict("r2", api_name="/cancel_run")
    assert client.predict("nope", api_name="/cancel_run") == "Error: No run with id 'nope'"
    assert client.predict("nope", api_name="/run_detail")[2] == "No run with id 'nope'."


def test_preview_and_stats(served: tuple[FakeApi, Any]) -> None:
    api, client = served
    preview, columns, status = client.predict("orders", api_name="/preview")
    assert preview["headers"] == ["id", "amount"] and len(preview["data"]) == 3
    assert uidata.PREVIEW_ROWS == 50  # the README: the Data tab previews the first 50 rows
    assert api.sql_limits == [uidata.PREVIEW_ROWS]
    assert columns["data"] == [["id", "BIGINT"], ["amount", "DOUBLE"]]
    assert status == "Table 'orders': 3 rows."
    assert "No table named 'nope'" in client.predict("nope", api_name="/preview")[2]
    by_state, loaded, status = client.predict(api_name="/stats")
    assert status == "2 runs; 3 rows loaded by succeeded runs."
    counts = dict(by_state["data"])
    assert list(counts) == fmt.RUN_STATES and counts["succeeded"] >= 1
    assert loaded["columns"] == ["finished_at", "job", "rows"]
    assert loaded["datatypes"]["finished_at"] == "temporal"
    assert [row[1:] for row in loaded["data"]] == [["orders", 3]]


def test_engines_tab_lists_where_the_engines_run(served: tuple[FakeApi, Any]) -> None:
    fake, client = served
    summary, table, count, _ = client.predict(api_name="/engines")
    assert summary == "3 engines on 2 nodes · capacity 24 runs at once · 2 running · 2 queued"
    assert table["headers"] == efmt.ENGINE_COLUMNS and count == 3
    rows = {row[0]: row for row in table["data"]}
    assert list(rows) == ["tg_engine_0", "tg_engine_1", "tg_engine_2"]
    assert rows["tg_engine_0"] == ["tg_engine_0", "up", "10.0.0.1", "aaaaaaaa", 100, 8, 1, 0, "r2"]
    assert rows["tg_engine_1"][2:4] == ["10.0.0.2", "bbbbbbbb"] and rows["tg_engine_1"][6] == 0
    fake.engine_list[1] = {"name": "tg_engine_1", "state": "unavailable", "error": "ActorDiedError"}
    summary, table, _, _ = client.predict(api_name="/engines")
    assert summary == (
        "3 engines on 1 node · capacity 16 runs at once · 2 running · 2 queued · 1 unavailable"
    )
    assert table["data"][1][:3] == ["tg_engine_1", "unavailable (ActorDiedError)", ""]
    fake.engines_error = RuntimeError("pool down")
    status = client.predict(api_name="/engines")[3]
    assert status == "Refresh failed: Error (RuntimeError): pool down"
    ids = {c.get("props", {}).get("elem_id") for c in client.config["components"]}
    assert {"tab-engines", "engines-summary", "engines-table", "engines-count", "engines-grace",
            "engines-scale", "engines-status"} <= ids  # fmt: skip
    timers = [c["props"] for c in client.config["components"] if c["type"] == "timer"]
    # the Engines timer (the last) waits until its tab is shown, like those of Runs and Charts
    assert [(t["value"], t["active"]) for t in timers] == [
        (2.0, True), (2.0, False), (10.0, False), (5.0, False)
    ]  # fmt: skip


def test_scale_engines_calls_the_api_and_says_what_changed(served: tuple[FakeApi, Any]) -> None:
    fake, client = served
    summary, table, count, status = client.predict(4, None, api_name="/scale_engines")
    assert fake.scaled == [(4, None)]
    assert status == "Added 1 engine: tg_engine_3. Now 4 engines."
    assert count == 4 and summary.startswith("4 engines on 2 nodes · capacity 32 runs at once")
    assert [row[0] for row in table["data"]] == [f"tg_engine_{i}" for i in range(4)]
    summary, table, count, status = client.predict(2, 1.5, api_name="/scale_engines")
    assert fake.scaled[-1] == (2, 1.5) and len(fake.engine_list) == 2
    assert status == (
        "Removed 2 engines: tg_engine_3, tg_engine_2. 1 run interrupted, retried on the other"
        " engines: r9. Now 2 engines."
    )
    assert count == 2 and [row[0] for row in table["data"]] == ["tg_engine_0", "tg_engine_1"]
    assert client.predict(2, None, api_name="/scale_engines")[3] == (
        "Already 2 engines: nothing changed."
    )


def test_scale_engines_errors_are_status_lines(served: tuple[FakeApi, Any]) -> None:
    fake, client = served
    status = client.predict(9, 0, api_name="/scale_engines")[3]
    assert status == (
        "Not enough room in the cluster: could not start 6 more engine(s): add nodes or ask for"
        " fewer. The engines are as they were."
    )
    assert fake.scaled == [(9, 0.0)] and len(fake.engine_list) == 3
    refused = {
        (0, None): "Engines must be a whole number from 1 to 256, not 0.",
        (300, None): "Engines must be a whole number from 1 to 256, not 300.",
        (None, None): "Enter how many engines to run (1 to 256).",
        (2, -5): "Grace must be 0 to 86400 seconds, or empty, not -5.",
    }
    for (count, grace), message in refused.items():
        assert client.predict(count, grace, api_name="/scale_engines")[3] == message
    assert fake.scaled == [(9, 0.0)]  # a refused form never reaches the API
    assert client.predict(api_name="/engines")[2] == 3
