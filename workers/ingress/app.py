"""The ingress application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from shared.config import Settings
from shared.db.engine import make_engine, make_session_factory
from shared.errors import ConveyorError, PermanentError
from shared.oauth.token_client import make_http_client
from shared.storage.base import ObjectStore
from workers.ingress import routes_files, routes_jobs, routes_oauth
from workers.ingress.deps import Unauthorized
from workers.ingress.limits import BodySizeLimit
from workers.ingress.metrics import JobsCollector
from workers.ingress.ops_metrics import OperationsCollector
from workers.ingress.ui import routes as routes_ui

log = structlog.get_logger("ingress")

STATUS_BY_CODE = {
    "unauthorized": 401,
    "not_found": 404,
    "not_cancellable": 409,
    "kind_not_public": 403,
    "connection_owned_by_another_key": 409,
    "unknown_kind": 422,
    "invalid_payload": 422,
    "unknown_version": 422,
    "too_large": 413,
    "storage_unavailable": 503,
    "unknown_provider": 404,
    "provider_not_configured": 409,
    "invalid_state": 400,
    "authorization_failed": 400,
    "provider_error": 502,
}


def create_app(
    settings: Settings,
    sessions: sessionmaker[Session] | None = None,
    store: ObjectStore | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = None
        if sessions is None:
            engine = make_engine(
                settings.require_database_url(), application_name="conveyor-ingress"
            )
            app.state.sessions = make_session_factory(engine)
        else:
            app.state.sessions = sessions
        app.state.store = store if store is not None else _default_store(settings)
        registry = CollectorRegistry()
        registry.register(
            JobsCollector(app.state.sessions, settings.broker_url, settings.rabbitmq_api_url)
        )
        registry.register(OperationsCollector(app.state.sessions))
        app.state.registry = registry
        app.state.oauth_http = make_http_client(settings.oauth_http_timeout_s)
        yield
        app.state.oauth_http.close()
        if engine is not None:
            engine.dispose()

    app = FastAPI(title="Conveyor ingress", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(routes_jobs.router)
    app.include_router(routes_files.router)
    app.include_router(routes_oauth.router)
    app.include_router(routes_ui.router)
    _add_error_handlers(app)
    _add_ops_routes(app)
    return app


def _default_store(settings: Settings) -> ObjectStore | None:
    """S3 when configured; without it the file routes answer 503 and the rest still works."""
    if not settings.s3_endpoint:
        return None
    from shared.storage.s3 import S3Store

    return S3Store.from_settings(settings)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConveyorError)
    async def conveyor_error(request: Request, exc: ConveyorError) -> JSONResponse:
        status = STATUS_BY_CODE.get(exc.code, 400 if isinstance(exc, PermanentError) else 500)
        if isinstance(exc, Unauthorized):
            status = 401
        return _error(status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return _error(422, "invalid_request", f"{where}: {first['msg']}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if getattr(request.state, "body_too_large", False):
            limit = request.app.state.settings.max_body_bytes
            return _error(413, "body_too_large", f"request body exceeds {limit} bytes")
        return _error(exc.status_code, "http_error", str(exc.detail))


def _add_ops_routes(app: FastAPI) -> None:
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> JSONResponse:
        try:
            with request.app.state.sessions() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:
            return _error(503, "database_unavailable", type(exc).__name__)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> PlainTextResponse:
        from prometheus_client import REGISTRY

        body = generate_latest(REGISTRY) + generate_latest(request.app.state.registry)
        return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)
