"""A mutable fake API for integration tests: orders that tests change between runs, with
`updated_since`, page pagination, failure injection and a log of every request it saw."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class FakeApi:
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    # page number -> remaining forced failures (status)
    failures: dict[int, list[int]] = field(default_factory=dict)
    delay: float = 0.0

    def add(self, first: int, count: int, updated: datetime = T0, **extra: Any) -> None:
        for i in range(first, first + count):
            self.rows[i] = {"id": i, "amount": float(i), "updated_at": iso(updated), **extra}

    def touch(self, ids: list[int], updated: datetime, **changes: Any) -> None:
        for i in ids:
            self.rows[i] = {**self.rows[i], "updated_at": iso(updated), **changes}

    def pages_requested(self) -> list[int]:
        return [int(r.get("page", "1")) for r in self.requests]

    def app(self) -> Starlette:
        async def orders(request: Request) -> JSONResponse:
            query = dict(request.query_params)
            self.requests.append(query)
            page = int(query.get("page", "1"))
            per_page = int(query.get("per_page", "100"))
            if self.delay:
                await asyncio.sleep(self.delay)
            pending = self.failures.get(page)
            if pending:
                return JSONResponse({"error": "injected"}, status_code=pending.pop(0))
            since = query.get("updated_since")
            chosen = sorted(
                (r for r in self.rows.values() if since is None or r["updated_at"] >= since),
                key=lambda r: r["id"],
            )
            chunk = chosen[(page - 1) * per_page : page * per_page]
            return JSONResponse({"data": chunk, "total": len(chosen)})

        return Starlette(routes=[Route("/orders", orders)])


def later(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)
