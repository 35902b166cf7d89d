"""The JSON routes of CONTRACT §4 under /api, every one but /api/health behind the token."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, WithJsonSchema

from serve import schemas
from serve.auth import bearer_dependency
from serve.routes.sql import sql_router
from serve.schemas import (
    CONFLICT_ENDED,
    INVALID,
    NOT_FOUND_JOB,
    NOT_FOUND_RUN,
    NOT_FOUND_TABLE,
    UNAUTHORIZED,
    UNAVAILABLE,
    answer,
    responses,
)
from serve.service import ApiService
from tg_actors.chains import parse_instant
from tg_actors.engine.preview import DEFAULT_PAGES, DEFAULT_SAMPLE, MAX_PAGES, MAX_SAMPLE
from tg_actors.errors import JobValidationError, RunNotFound
from tg_actors.jobs import check_shape, validation_errors
from tg_actors.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from tg_actors.names import MAX_ENGINES
from tg_actors.runstate import RunState

# a command sent again with the same key is applied once (tg_actors/commands/desk.py)
CommandId = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[A-Za-z0-9._:-]+$",
        min_length=1,
        max_length=128,
        description="the command's id: sent again with the same key, the command is applied "
        "once and answered as the first time (letters, digits, . _ : -; at most 128)",
    ),
]

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
# PUT and validate read the body themselves (JSON or YAML): documented here, so the OpenAPI
# (and clients or fuzzers generated from it) knows the job object
JOB_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}},
            "application/yaml": {"schema": {"type": "string", "description": "a job file"}},
        },
    }
}


async def job_body(request: Request) -> dict[str, Any] | str:
    raw = await request.body()
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if ctype in YAML_TYPES:
        return raw.decode("utf-8", errors="replace")
    data = _json_object(raw, "a job")
    check_shape(data, "body")  # deep nesting must not reach pickling or recursive walks
    return data


def build_api_router(service: ApiService, token: str) -> APIRouter:
    public = APIRouter(prefix="/api")

    @public.get(
        "/health",
        response_model=schemas.Health,
        responses={
            503: {
                "model": schemas.Health,
                "description": "starting (not every actor has booted) or degraded",
            }
        },
    )
    async def health() -> JSONResponse:
        """200 `ok` once every actor has booted and a triggered run would be taken; 503
        `starting` before that, 503 `degraded` when a component is down later."""
        body = await service.health()
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    secured = [Depends(bearer_dependency(token))]
    router = APIRouter()
    router.include_router(public)

    @router.get(
        "/metrics",
        dependencies=secured,
        response_class=PlainTextResponse,
        responses=responses(UNAUTHORIZED, UNAVAILABLE),
    )
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(await service.metrics(), media_type=METRICS_CONTENT_TYPE)

    # every secured route: 401 without the token, 503 when an actor it asks is down
    errors = responses(UNAUTHORIZED, UNAVAILABLE)
    parts = (jobs_router, preview_router, runs_router, engines_router, commands_router, sql_router)
    for part in parts:
        router.include_router(part(service), prefix="/api", dependencies=secured, responses=errors)
    return router


class EngineScale(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=MAX_ENGINES, description="engines wanted")
    grace_seconds: float | None = Field(
        None,
        ge=0,
        le=86_400,
        description="how long a removed engine's runs may take to end before they are "
        "interrupted and retried elsewhere (default TG_STOP_GRACE_SECONDS)",
    )


def _instant(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date or datetime (text)")
    try:
        return parse_instant(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or datetime: {value!r}") from None


# ISO 8601 text; without an offset (or a date alone, its midnight) it is UTC
Instant = Annotated[
    datetime,
    PlainValidator(_instant),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class PreviewOptions(BaseModel):
    """How much a test read reads."""

    model_config = ConfigDict(extra="forbid")

    pages: int = Field(DEFAULT_PAGES, ge=1, le=MAX_PAGES, description="pages to read")
    records: int = Field(DEFAULT_SAMPLE, ge=1, le=MAX_SAMPLE, description="sample size")

    def counts(self, pages: int | None, records: int | None) -> tuple[int, int]:
        """(pages, records): the query's, else the body's."""
        return (pages or self.pages, records or self.records)


PagesQuery = Annotated[int | None, Query(ge=1, le=MAX_PAGES, description="pages to read")]
RecordsQuery = Annotated[int | None, Query(ge=1, le=MAX_SAMPLE, description="sample size")]


async def _optional_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    return _json_object(raw, "the options") if raw.strip() else {}


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object body; JobValidationError (422) for bad JSON or another JSON value."""
    import orjson

    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise JobValidationError("body", [("", f"invalid JSON: {exc}")]) from None
    if not isinstance(data, dict):
        raise JobValidationError("body", [("", f"{what} must be a JSON object")])
    return data


class BackfillRange(BaseModel):
    """A backfill's range [from, to)."""

    model_config = ConfigDict(extra="forbid")

    start: Instant = Field(alias="from", description="the range's start (included)")
    end: Instant = Field(alias="to", description="the range's end (excluded)")


def engines_router(service: ApiService) -> APIRouter:
    secured = APIRouter()

    @secured.get("/engines", response_model=schemas.Engines)
    async def list_engines() -> JSONResponse:
        """The SyncEngine actors: node, slots, runs in hand; the Scheduler's capacity."""
        return answer(await service.engines())

    @secured.put("/engines", response_model=schemas.EnginesScaled, responses=INVALID)
    async def scale_engines(body: EngineScale, command_id: CommandId = None) -> JSONResponse:
        """Scale the engines at run time: new ones join the work queue, removed ones drain
        first (runs still going after `grace_seconds` are retried on the others). 503 when
        the cluster cannot place the engines asked for."""
        scaled = await service.scale_engines(body.count, body.grace_seconds, command_id=command_id)
        return answer(scaled)

    return secured


def jobs_router(service: ApiService) -> APIRouter:
    secured = APIRouter()

    @secured.get("/jobs", response_model=list[schemas.JobSummary])
    async def list_jobs() -> Response:
        return Response(await service.list_jobs_json(), media_type="application/json")

    @secured.put(
        "/jobs/{name}",
        openapi_extra=JOB_BODY,
        response_model=schemas.Job,
        responses=responses({201: {"model": schemas.Job, "description": "created"}}, INVALID),
    )
    async def put_job(name: str, request: Request, command_id: CommandId = None) -> JSONResponse:
        body = await job_body(request)
        created, job = await service.put_job(name, body, command_id=command_id)
        return answer(job, status_code=201 if created else 200)

    @secured.get("/jobs/{name}", response_model=schemas.Job, responses=NOT_FOUND_JOB)
    async def get_job(name: str) -> JSONResponse:
        return answer(await service.get_job(name))

    @secured.post(
        "/jobs/{name}/validate",
        openapi_extra=JOB_BODY,
        response_model=schemas.Validated,
        responses=INVALID,
    )
    async def validate_job(name: str, request: Request) -> JSONResponse:
        """Validate a job body as PUT would, storing nothing: 200 {"valid": true, "job"}
        or 422 with the errors by field path."""
        job = await service.validate_job(await job_body(request), name)
        return answer({"valid": True, "job": job})

    @secured.delete("/jobs/{name}", status_code=204, responses=NOT_FOUND_JOB)
    async def delete_job(name: str, command_id: CommandId = None) -> Response:
        await service.delete_job(name, command_id=command_id)
        return Response(status_code=204)

    @secured.post("/jobs/{name}/pause", response_model=schemas.PausedJob, responses=NOT_FOUND_JOB)
    async def pause(name: str, command_id: CommandId = None) -> JSONResponse:
        return answer(await service.set_paused(name, True, command_id=command_id))

    @secured.post("/jobs/{name}/resume", response_model=schemas.PausedJob, responses=NOT_FOUND_JOB)
    async def resume(name: str, command_id: CommandId = None) -> JSONResponse:
        return answer(await service.set_paused(name, False, command_id=command_id))

    @secured.post(
        "/jobs/{name}/runs",
        status_code=202,
        response_model=schemas.RunAccepted,
        responses=responses(NOT_FOUND_JOB, INVALID),
    )
    async def trigger(
        name: str,
        priority: int | None = Query(None, ge=0, le=100),
        command_id: CommandId = None,
    ) -> JSONResponse:
        return answer({"run_id": await service.trigger(name, priority, command_id=command_id)}, 202)

    @secured.post(
        "/jobs/{name}/backfill",
        status_code=202,
        response_model=schemas.RunAccepted,
        responses=responses(NOT_FOUND_JOB, INVALID),
    )
    async def backfill(
        name: str, body: BackfillRange, command_id: CommandId = None
    ) -> JSONResponse:
        """Queue a run over [from, to) that leaves the live cursor alone: 404 for an unknown
        job, 422 saying why the job cannot bound that range."""
        run_id = await service.backfill(name, body.start, body.end, command_id=command_id)
        return answer({"run_id": run_id}, 202)

    @secured.post(
        "/jobs/{name}/refresh",
        status_code=202,
        response_model=schemas.RunAccepted,
        responses=NOT_FOUND_JOB,
    )
    async def refresh(name: str, command_id: CommandId = None) -> JSONResponse:
        """Queue a full re-read that replaces the table (and resets the cursor) on success."""
        return answer({"run_id": await service.refresh(name, command_id=command_id)}, 202)

    return secured


def preview_router(service: ApiService) -> APIRouter:
    secured = APIRouter()

    @secured.post(
        "/jobs/{name}/preview",
        response_model=schemas.Preview,
        responses=responses(NOT_FOUND_JOB, INVALID),
    )
    async def preview_job(
        name: str, request: Request, pages: PagesQuery = None, records: RecordsQuery = None
    ) -> JSONResponse:
        """A test read of the stored job: up to `pages` pages (default 3, at most 20), the
        requests with secrets masked, records, a sample, column types, the stop reason and
        warnings (README "Test a job before saving it"). Writes nothing. Body (optional):
        `{"pages": N, "records": K}`."""
        options = _options(await _optional_json(request))
        return answer(await service.preview_job(name, *options.counts(pages, records)))

    @secured.post(
        "/preview", openapi_extra=JOB_BODY, response_model=schemas.Preview, responses=INVALID
    )
    async def preview(
        request: Request, pages: PagesQuery = None, records: RecordsQuery = None
    ) -> JSONResponse:
        """A test read of a job body, saved or not (JSON, YAML text, or `{"job": <job or
        YAML text>, "pages": N, "records": K}`): the answer of /api/jobs/{name}/preview;
        422 for a job that does not validate, by field path (and line, for YAML)."""
        body = await job_body(request)
        options = PreviewOptions()
        if isinstance(body, dict) and "job" in body:
            wrapper = {k: v for k, v in body.items() if k != "job"}
            options = _options(wrapper)
            body = body["job"]
            if not isinstance(body, dict | str):
                raise JobValidationError("body", [("job", "a job object or YAML text")])
        return answer(await service.preview(body, *options.counts(pages, records)))

    return secured


def _options(data: dict[str, Any]) -> PreviewOptions:
    try:
        return PreviewOptions.model_validate(data)
    except ValidationError as exc:
        raise JobValidationError("body", validation_errors(exc)) from None


def commands_router(service: ApiService) -> APIRouter:
    secured = APIRouter()

    @secured.get("/commands", response_model=list[schemas.CommandEntry], responses=INVALID)
    async def list_commands(
        job: str | None = None, limit: int = Query(50, ge=1, le=10_000)
    ) -> JSONResponse:
        """The audit log: every command of the API and the UI (saves, deletes, pauses,
        resumes, triggers, cancels, scales), newest first, with who sent it and what came of
        it; `job` keeps one job's."""
        return answer(await service.list_commands(job or None, limit))

    return secured


def runs_router(service: ApiService) -> APIRouter:
    secured = APIRouter()

    @secured.get("/runs", response_model=list[schemas.Run], responses=INVALID)
    async def list_runs(
        job: str | None = None,
        state: str | None = None,
        limit: int = Query(100, ge=1, le=10_000),
    ) -> Response:
        body = await service.list_runs_json(job or None, state or None, limit)
        return Response(body, media_type="application/json")

    @secured.get("/runs/{run_id}", response_model=schemas.RunDetail, responses=NOT_FOUND_RUN)
    async def get_run(run_id: str) -> JSONResponse:
        run = await service.get_run(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return answer(run)

    @secured.post(
        "/runs/{run_id}/cancel",
        status_code=202,
        response_model=schemas.Cancelled,
        responses=responses(NOT_FOUND_RUN, CONFLICT_ENDED),
    )
    async def cancel(run_id: str, command_id: CommandId = None) -> JSONResponse:
        await service.cancel(run_id, command_id=command_id)
        return answer({"run_id": run_id, "state": RunState.CANCELLED.value}, 202)

    @secured.get(
        "/runs/{run_id}/logs", response_model=list[schemas.LogLine], responses=NOT_FOUND_RUN
    )
    async def run_logs(run_id: str) -> JSONResponse:
        logs = await service.run_logs(run_id)
        if logs is None:
            raise RunNotFound(run_id)
        return answer(logs)

    @secured.get(
        "/events",
        response_class=schemas.EventStream,
        responses=responses(schemas.EVENTS_RESPONSES, INVALID),
    )
    async def events(job: str | None = None) -> StreamingResponse:
        """Server-sent events, one `run` event per run state change (optionally one job's)."""
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            service.events.stream(job or None), media_type="text/event-stream", headers=headers
        )

    @secured.get("/tables", response_model=list[schemas.Table])
    async def list_tables() -> JSONResponse:
        return answer(await service.list_tables())

    @secured.get(
        "/tables/{name}",
        response_model=schemas.TablePreview,
        responses=responses(NOT_FOUND_TABLE, INVALID),
    )
    async def preview_table(name: str, limit: int = Query(50, ge=1, le=10_000)) -> JSONResponse:
        return answer(await service.preview_table(name, limit))

    return secured


def build_api(
    service: ApiService, token: str, max_body_bytes: int = 1 << 20, cors_origins: str = ""
) -> FastAPI:
    from fastapi.middleware.cors import CORSMiddleware

    from serve.access import BodyLimit, UiAuth
    from serve.errors import install_error_handlers

    # the spec and its docs page are routes of ours, behind the token (CONTRACT §4), not
    # FastAPI's open ones
    app = FastAPI(title="turbo-giggle", openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(build_api_router(service, token))
    app.include_router(docs_router(app, token))
    install_error_handlers(app)
    _document_job_schema(app)
    # last added runs first: the body limit, then who may see the UI, then CORS (off unless
    # TG_CORS_ORIGINS names origins)
    origins = [o.strip() for o in cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(UiAuth, token=token)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    return app


OPENAPI_URL = "/api/openapi.json"
DOCS_URL = "/api/docs"


def docs_router(app: FastAPI, token: str) -> APIRouter:
    """GET /api/openapi.json and /api/docs, for the bearer token or the UI's session cookie (a
    signed-in browser opens the docs, whose page then fetches the spec with that cookie). A
    browser without either is sent to sign in first; anything else gets 401."""
    from fastapi.openapi.docs import get_swagger_ui_html

    from serve.access import signed_in

    async def require_token(request: Request) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if signed_in(headers, token):
            return
        if request.url.path == DOCS_URL and "text/html" in headers.get("accept", ""):
            location = "/login?" + urlencode({"next": DOCS_URL})
            raise HTTPException(303, "sign in first", headers={"Location": location})
        raise HTTPException(
            401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )

    router = APIRouter(dependencies=[Depends(require_token)], include_in_schema=False)

    @router.get(OPENAPI_URL)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get(DOCS_URL)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url=OPENAPI_URL, title="turbo-giggle: API docs")

    return router


def _document_job_schema(app: FastAPI) -> None:
    """Add the job object (JobSpec's JSON schema) to the OpenAPI components."""
    from tg_actors.jobs import JobSpec

    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = default()
        schema = JobSpec.model_json_schema(ref_template="#/components/schemas/{model}")
        components = spec.setdefault("components", {}).setdefault("schemas", {})
        components.update(schema.pop("$defs", {}))
        components["JobSpec"] = schema
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
