"""Source faults: a misbehaving API on 127.0.0.1 against the real
system (every actor), one fault per case.

Each case first loads the job once from a well-behaved server (table and incremental cursor
committed), then arms the fault and runs it again. Per CONTRACT, the second run ends either

- succeeded, with exactly the rows the API served (count, distinct ids, checksum) and the new
  cursor, or
- failed, with an error naming the cause, and nothing of it committed: the table and the
  cursor as the first run left them, and no staging left behind.

One runtime and one server serve the whole module; retries and backoffs are kept tiny.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import orjson
import pytest
import ray

from tests.kit.fakeapi import T0, iso
from tests.kit.jobs import write_job
from tests.kit.ray import poll_until, running_system, wait_for_run
from tests.kit.servers import serve_app
from tg_actors import runtime

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]

PER_PAGE = 100
FAULT_PAGE = 3  # faults that hit one page hit this one: pages 1-2 are staged by then
RETRY_AFTER = 1.0  # seconds the 429 asks for
SLOW = 2.0  # seconds a slow answer takes; the request timeout is 0.5 s
HUGE_NOTE = 300_000  # characters of the `note` of each row of a huge page


# -- the misbehaving API --------------------------------------------------------------------


@dataclass
class Scenario:
    """One API at `/<name>/items` (and `/<name>/token`). Disarmed it is well-behaved; armed, it
    serves generation 2 of its rows and misbehaves as `fault` says."""

    name: str
    fault: str
    rows: int = 400
    armed: bool = False
    tries: dict[int, int] = field(default_factory=dict)  # page -> requests seen while armed
    times: list[tuple[int, float]] = field(default_factory=list)  # (page, arrival) while armed
    issued: int = 0  # oauth tokens handed out
    served: int = 0  # requests the newest token has served
    unauthorized: int = 0

    @property
    def generation(self) -> int:
        return 2 if self.armed else 1

    def arm(self) -> None:
        self.armed = True
        self.tries.clear()
        self.times.clear()
        self.unauthorized = 0

    def amount(self, i: int, page: int) -> Any:
        """Exact binary fractions, so sums compare exactly."""
        if self.fault in ("widen", "incompatible"):
            if not self.armed or page < FAULT_PAGE:
                return i * 2 + self.generation  # BIGINT
            return i + 0.25 if self.fault == "widen" else f"n/a-{i}"  # DOUBLE / VARCHAR
        return i + 0.25 * self.generation

    def page_rows(self, page: int) -> list[dict[str, Any]]:
        if self.fault == "same_page" and self.armed:
            page = 1  # ignores the paging parameter
        if self.fault == "endless" and self.armed:
            first = (page - 1) * PER_PAGE  # never runs out
        else:
            first = min((page - 1) * PER_PAGE, self.rows)
        last = first + PER_PAGE if self.fault == "endless" and self.armed else self.rows
        updated = iso(T0 + timedelta(minutes=self.generation))
        rows = [
            {"id": i, "amount": self.amount(i, page), "updated_at": updated}
            for i in range(first + 1, min(first + PER_PAGE, last) + 1)
        ]
        if self.fault in ("huge", "too_big") and self.armed and page == FAULT_PAGE:
            for row in rows:  # 100 rows of 300 kB: a 30 MB page
                row["note"] = "x" * HUGE_NOTE
        return rows

    def expected(self, max_pages: int | None = None) -> tuple[int, int, float]:
        """(rows, distinct ids, sum of amount) of a table holding what the API now serves."""
        pages = max_pages or -(-self.rows // PER_PAGE)
        rows = [r for p in range(1, pages + 1) for r in self.page_rows(p)]
        return len(rows), len({r["id"] for r in rows}), float(sum(r["amount"] for r in rows))


class DrillServer:
    """A plain ASGI app, so it can also break a response half-way."""

    def __init__(self) -> None:
        self.scenarios: dict[str, Scenario] = {}
        self.url = ""

    def add(self, scenario: Scenario) -> None:
        self.scenarios[scenario.name] = scenario

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        _, name, route = scope["path"].split("/", 2)
        scenario = self.scenarios[name]
        if route == "token":
            scenario.issued += 1
            scenario.served = 0
            token = {"access_token": f"tok-{scenario.issued}", "expires_in": 3600}
            return await _answer(send, 200, orjson.dumps(token))
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        headers = dict(scope["headers"])
        await self._items(scenario, int(query.get("page", "1")), headers, send)

    async def _items(self, sc: Scenario, page: int, headers: dict[bytes, bytes], send: Any) -> None:
        tries = 1
        if sc.armed:
            tries = sc.tries[page] = sc.tries.get(page, 0) + 1
            sc.times.append((page, time.monotonic()))
        fault = sc.fault if sc.armed else ""
        auth = headers.get(b"authorization", b"").decode()
        if sc.fault == "bearer" and (fault or auth != "Bearer good-token"):
            return await _answer(send, 401, b'{"error": "token expired"}')
        if sc.fault == "oauth":
            current = f"Bearer tok-{sc.issued}"
            revoked = bool(fault) and sc.served >= 1  # armed: a token lasts one request
            if auth != current or revoked:
                sc.unauthorized += 1
                return await _answer(send, 401, b'{"error": "invalid_token"}')
            sc.served += 1
        once, here = tries == 1, page == FAULT_PAGE
        if fault == "429" and once and page in (1, FAULT_PAGE):
            return await _answer(send, 429, b"slow down", [(b"retry-after", b"1")])
        if (fault.startswith("500_once") and once) or (fault == "500_always" and here):
            return await _answer(send, 500, b"internal error, try again")
        if (fault == "slow_once" and once) or (fault == "slow_always" and here):
            await asyncio.sleep(SLOW)
        if (fault == "drop_once" and once) or (fault == "drop_always" and here):
            return await _drop(send)
        if fault == "bad_json" and here:
            return await _answer(send, 200, b'{"data": [{"id": 1, "amount": 2.5}, {"id": ')
        records = sc.page_rows(page)
        base = f"{self.url}/{sc.name}/items"
        if fault == "same_next":
            following: str | None = f"{base}?page=2"  # page 2 points back at itself
        else:
            ended = not records and fault not in ("same_page", "endless")
            following = None if ended else f"{base}?page={page + 1}"
        body = {"data": records, "next": following, "total": sc.rows}
        await _answer(send, 200, orjson.dumps(body))


async def _answer(
    send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


async def _drop(send: Any) -> None:
    """Promise 100 kB, send 20 bytes, hang up: uvicorn closes the socket mid-response."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"100000")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"data": [{"id": 1, ', "more_body": True})


# -- the drills ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Drill:
    fault: str
    errors: tuple[str, ...] = ()  # a failed run's error names all of these; () = must succeed
    source: str = ""  # extra lines under `source:`
    check: Callable[[Scenario], object] | None = None  # more about what the API saw
    max_pages: int | None = None
    types: tuple[tuple[str, str], ...] = ()  # (column, DuckDB type) after the run

    @property
    def name(self) -> str:
        return f"drill_{self.fault}"


def _retry_waited_for_retry_after(sc: Scenario) -> None:
    gaps = []
    for page, tries in sc.tries.items():
        assert tries == (2 if page in (1, FAULT_PAGE) else 1), f"page {page}: {tries} requests"
        if tries == 2:
            first, second = (t for p, t in sc.times if p == page)
            gaps.append(second - first)
    assert min(gaps) >= RETRY_AFTER * 0.9, gaps  # Retry-After honoured, not the 10 ms backoff


def _each_page_tried_twice(sc: Scenario) -> None:
    assert set(sc.tries.values()) == {2}, sc.tries


def _each_page_retried(sc: Scenario) -> None:
    # at least: under load a normal answer may also outlast the 0.5 s timeout
    assert min(sc.tries.values()) >= 2, sc.tries


def _each_page_once(sc: Scenario) -> None:
    assert sc.tries == dict.fromkeys(range(1, 6), 1), sc.tries  # 4 pages and the empty one


def _refused_at_once(sc: Scenario) -> None:
    assert sc.tries[FAULT_PAGE] == 1, sc.tries  # not retried: it would be as big again


def _tried_three_times(sc: Scenario) -> None:
    assert sc.tries[FAULT_PAGE] == 3 and FAULT_PAGE + 1 not in sc.tries, sc.tries


def _refreshed(sc: Scenario) -> None:
    assert sc.unauthorized >= 4 and sc.issued >= 6, (sc.unauthorized, sc.issued)


def _asked_once(sc: Scenario) -> None:
    assert sc.tries == {1: 1}, sc.tries  # a 401 with a static bearer is not retried


TIMEOUT = "  timeout: 500ms"
DRILLS = [
    Drill("429", check=_retry_waited_for_retry_after),
    Drill("500_once", check=_each_page_tried_twice),
    Drill(
        "500_once_parallel",  # pages fetched 4 at a time, each failing once
        source="  paginate: {type: page, total_path: $.total}\n  concurrency: 4",
        check=_each_page_tried_twice,
    ),
    Drill("500_always", ("HTTP 500 after 3 tries", "internal error"), check=_tried_three_times),
    Drill("slow_once", source=TIMEOUT, check=_each_page_retried),
    Drill(
        "slow_always", ("timed out after 0.5s, after 3 tries",), TIMEOUT, check=_tried_three_times
    ),
    Drill("drop_once", check=_each_page_tried_twice),
    Drill("drop_always", ("failed after 3 tries", "RemoteProtocolError")),
    Drill("bad_json", ("response is not JSON", f"page={FAULT_PAGE}")),
    Drill(
        "oauth",
        source="  auth: {type: oauth2_client_credentials, token_url: '{base}/drill_oauth/token',"
        " client_id: drills, client_secret: s3cret-value}",
        check=_refreshed,
    ),
    Drill(
        "bearer",
        ("HTTP 401", "token expired"),
        source="  auth: {type: bearer, token: good-token}",
        check=_asked_once,
    ),
    # BIGINT, then DOUBLE from page 3 on: the column widens
    Drill("widen", types=(("amount", "DOUBLE"),)),
    # BIGINT, then text from page 3 on: fails, naming the column and both types
    Drill("incompatible", ("DestinationError", "column amount is BIGINT", "VARCHAR in this batch")),
    Drill(
        "same_next",
        ("next_url pagination", "already requested"),
        source="  paginate: {type: next_url, path: $.next}",
    ),
    Drill("same_page", ("has the same 100 records as page 1", "ignore the paging")),
    Drill("endless", source="  max_pages: 5", max_pages=5),
    # a 30 MB page loads (read under the 256 MiB default of max_page_bytes) ...
    Drill(
        "huge",
        types=(("note", "VARCHAR"),),
        check=_each_page_once,
    ),
    # ... and fails clearly, at once, when the job caps pages at 5 MB
    Drill(
        "too_big",
        ("larger than source.max_page_bytes (5,000,000 bytes)", f"page={FAULT_PAGE}"),
        source="  max_page_bytes: 5000000",
        check=_refused_at_once,
    ),
]


def job_yaml(drill: Drill, base: str) -> str:
    return f"""
name: {drill.name}
retries: {{max_attempts: 1}}
source:
  url: {base}/{drill.name}/items
  params: {{per_page: {PER_PAGE}}}
  records: "$.data"
  paginate: {{type: page}}
  incremental: {{cursor_field: updated_at, param: updated_since, initial: "2024-01-01T00:00:00Z"}}
  max_tries: 3
  backoff: 10ms
  max_backoff: 2s
  checkpoint_rows: {PER_PAGE}
{drill.source.replace("{base}", base)}
destination: {{table: {drill.name}, write: merge, primary_key: [id]}}
""".replace("  paginate: {type: page}\n", "", 1 if "paginate:" in drill.source else 0)


@pytest.fixture(scope="module")
def drills(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[runtime.Runtime, DrillServer]]:
    server = DrillServer()
    for drill in DRILLS:
        server.add(Scenario(drill.name, drill.fault))
    tmp = tmp_path_factory.mktemp("drills")
    with serve_app(server) as url:
        server.url = url
        for drill in DRILLS:
            write_job(tmp / "configs", drill.name, job_yaml(drill, url))
        with running_system(tmp, f"t_{uuid.uuid4().hex[:8]}", engines=1) as rt:
            yield rt, server


def table_stats(rt: runtime.Runtime, table: str) -> tuple[int, int, float]:
    sql = f"SELECT count(*), count(DISTINCT id), sum(amount)::DOUBLE FROM {table}"
    ((rows, ids, total),) = ray.get(rt.db.query.remote(sql))
    return int(rows), int(ids), float(total)


def column_type(rt: runtime.Runtime, table: str, column: str) -> str:
    sql = "SELECT data_type FROM duckdb_columns() WHERE table_name = ? AND column_name = ?"
    ((kind,),) = ray.get(rt.db.query.remote(sql, [table, column]))
    return str(kind)


def run_job(rt: runtime.Runtime, job: str) -> dict[str, Any]:
    return wait_for_run(rt, ray.get(rt.scheduler.trigger.remote(job)), timeout=60)


def no_staging_left(rt: runtime.Runtime) -> None:
    poll_until(
        "staging to be dropped", lambda: ray.get(rt.db.staged_run_ids.remote()) == [] or None, 10
    )


@pytest.mark.parametrize("drill", DRILLS, ids=lambda d: d.fault)
def test_source_fault(drills: tuple[runtime.Runtime, DrillServer], drill: Drill) -> None:
    rt, server = drills
    sc = server.scenarios[drill.name]
    sc.armed = False
    seeded = run_job(rt, drill.name)
    assert seeded["state"] == "succeeded", seeded["error"]
    assert table_stats(rt, drill.name) == sc.expected()
    before = table_stats(rt, drill.name), ray.get(rt.db.cursor.remote(drill.name))
    assert before[1] == "2024-01-01T00:01:00Z"

    sc.arm()
    done = run_job(rt, drill.name)
    if not drill.errors:
        assert done["state"] == "succeeded", done["error"]
        expected = sc.expected(drill.max_pages)
        assert done["rows_loaded"] == expected[0]
        assert table_stats(rt, drill.name) == expected
        assert ray.get(rt.db.cursor.remote(drill.name)) == "2024-01-01T00:02:00Z"
        if drill.max_pages:
            assert done["pages"] == drill.max_pages
        for column, kind in drill.types:
            assert column_type(rt, drill.name, column) == kind
    else:
        assert done["state"] == "failed"
        for part in drill.errors:
            assert part in str(done["error"]), done["error"]
        assert "Traceback" not in done["error"] and 'File "' not in done["error"]
        assert (table_stats(rt, drill.name), ray.get(rt.db.cursor.remote(drill.name))) == before
    if drill.check is not None:
        drill.check(sc)
    no_staging_left(rt)
    assert "s3cret-value" not in str(done["error"])
