"""POST /api/sql (CONTRACT §7.5): one read-only query over the live database, answered by
`Accept` as JSON or streamed as an Arrow IPC stream, CSV or Parquet."""

from __future__ import annotations

import json
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from serve.formats import MEDIA_TYPES, negotiate
from serve.schemas import INVALID, SqlAnswer
from serve.service import ApiService

Scalar = str | int | float | bool | None
Param = Annotated[
    Scalar | list[Scalar] | dict[str, Scalar],
    Field(description="a value for a `?` or `$n` placeholder: a scalar, list or struct"),
]
_ERROR: dict[str, Any] = {"content": {"application/json": {}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": SqlAnswer,  # the JSON answer's schema; the streams' are below
        "description": "JSON by default, or the `Accept`ed stream",
        "content": {
            MEDIA_TYPES["json"]: {
                "example": {
                    "columns": [{"name": "n", "type": "BIGINT"}],
                    "rows": [[3]],
                    "row_count": 1,
                    "truncated": False,
                    "elapsed_ms": 1.2,
                }
            },
            MEDIA_TYPES["arrow"]: {"schema": {"type": "string", "format": "binary"}},
            MEDIA_TYPES["csv"]: {"schema": {"type": "string"}},
            MEDIA_TYPES["parquet"]: {"schema": {"type": "string", "format": "binary"}},
        },
    },
    406: {"description": "`Accept` names no format served", **_ERROR},
    408: {"description": "interrupted after TG_SQL_TIMEOUT (or `timeout`) seconds", **_ERROR},
    429: {"description": "TG_SQL_CONCURRENCY queries are running already", **_ERROR},
    **INVALID,  # a refused statement or DuckDB's error, at loc ["body", "sql"]
}


class SqlQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(
        max_length=1_000_000,
        description="one read-only statement: SELECT, WITH, FROM, VALUES, DESCRIBE, "
        "SUMMARIZE, SHOW, PIVOT ... IN (...), over the data tables and tg.runs, tg.run_logs, "
        "tg.jobs (secrets masked), tg.state",
    )
    params: list[Param] = Field(default=[], max_length=10_000)
    limit: int | None = Field(
        None,
        ge=0,
        le=1 << 62,
        description="at most this many rows (JSON: never more than TG_SQL_MAX_ROWS)",
    )
    timeout: float | None = Field(
        None, gt=0, le=86_400, description="seconds; lowers TG_SQL_TIMEOUT, never raises it"
    )


def sql_router(service: ApiService) -> APIRouter:
    secured = APIRouter()

    @secured.post("/sql", responses=RESPONSES, response_model=None)
    async def sql(body: SqlQuery, request: Request) -> Response:
        """A read-only query over the live DuckDB, on a snapshot of its own while syncs
        commit. JSON `{columns: [{name, type}], rows, row_count, truncated, elapsed_ms}` (at
        most TG_SQL_MAX_ROWS rows), or with `Accept: application/vnd.apache.arrow.stream`,
        `text/csv` or `application/vnd.apache.parquet` the whole result streamed in batches.
        422 names why a statement is refused (or DuckDB's error), 408 after the timeout, 429
        past TG_SQL_CONCURRENCY queries at once."""
        fmt = negotiate(request.headers.get("accept"))
        if fmt is None:
            served = ", ".join(MEDIA_TYPES.values())
            raise HTTPException(406, f"Accept names no format served here: {served}")
        params = list(body.params)
        if fmt == "json":
            answer = await service.sql(body.sql, params, body.limit, timeout=body.timeout)
            return Response(_json(answer), media_type=MEDIA_TYPES["json"])
        stream = await service.sql_stream(
            body.sql, params, body.limit, fmt=fmt, timeout=body.timeout
        )
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream, media_type=MEDIA_TYPES[fmt], headers=headers)

    return secured


def _json(answer: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(answer)
    except TypeError:  # an integer past 64 bits (HUGEINT): the standard library takes it
        return json.dumps(answer, separators=(",", ":"), allow_nan=False).encode()
