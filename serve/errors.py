"""Our error tree -> HTTP, in one place: the status follows the error's branch (errors.py)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tg_actors.errors import (
    ConfigError,
    Conflict,
    IdempotencyKeyReused,
    JobValidationError,
    NotFound,
    QueryError,
    QueryFailed,
    QueryRefused,
    QueryTimeout,
    TGError,
    TooManyQueries,
    Unavailable,
)

# the first branch in an error's MRO decides; an error of no branch is our bug: 500
STATUS: dict[type[TGError], int] = {
    NotFound: 404,
    ConfigError: 422,
    Conflict: 409,
    QueryTimeout: 408,
    QueryError: 422,
    TooManyQueries: 429,
    Unavailable: 503,
}


def status_of(exc: TGError) -> int:
    return next((STATUS[c] for c in type(exc).__mro__ if c in STATUS), 500)


def validation_detail(exc: JobValidationError) -> list[dict[str, object]]:
    """FastAPI's 422 shape; for a YAML body also the field's `line` and `column`."""
    out: list[dict[str, object]] = []
    for loc, msg in exc.errors:
        item: dict[str, object] = {
            "loc": ["body", *(loc.split(".") if loc else [])],
            "msg": msg,
            "type": "value_error",
        }
        if loc in exc.positions:
            item["line"], item["column"] = exc.positions[loc]
        out.append(item)
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TGError)
    async def _tg_error(_: Request, exc: TGError) -> JSONResponse:
        if isinstance(exc, JobValidationError):
            return JSONResponse({"detail": validation_detail(exc)}, status_code=422)
        if isinstance(exc, IdempotencyKeyReused):  # the header is what is wrong
            detail = [
                {"loc": ["header", "Idempotency-Key"], "msg": str(exc), "type": "value_error"}
            ]
            return JSONResponse({"detail": detail}, status_code=422)
        if isinstance(exc, QueryRefused | QueryFailed):  # the body's `sql` is what is wrong
            detail = [{"loc": ["body", "sql"], "msg": str(exc), "type": "value_error"}]
            return JSONResponse({"detail": detail}, status_code=422)
        return JSONResponse({"detail": str(exc)}, status_code=status_of(exc))
