"""Our error tree -> HTTP, in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tg_actors.errors import ConfigError, JobValidationError, NoCapacity, NotFound, TGError


def validation_detail(exc: JobValidationError) -> list[dict[str, object]]:
    return [
        {"loc": ["body", *(loc.split(".") if loc else [])], "msg": msg, "type": "value_error"}
        for loc, msg in exc.errors
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TGError)
    async def _tg_error(_: Request, exc: TGError) -> JSONResponse:
        if isinstance(exc, JobValidationError):
            return JSONResponse({"detail": validation_detail(exc)}, status_code=422)
        if isinstance(exc, NotFound):
            return JSONResponse({"detail": str(exc)}, status_code=404)
        if isinstance(exc, NoCapacity):
            return JSONResponse({"detail": str(exc)}, status_code=503)
        if isinstance(exc, ConfigError):
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return JSONResponse({"detail": str(exc)}, status_code=409)
