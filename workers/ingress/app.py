"""The ingress application factory."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.db.engine import libpq_dsn, make_engine, make_session_factory
from shared.messaging.handoff import Handoff
from shared.messaging.publisher import AmqpPublisher
from shared.oauth.token_client import make_http_client
from shared.runtime import freeze_startup_heap
from shared.storage.base import ObjectStore
from workers.ingress import (
    errors,
    openapi,
    routes_audit,
    routes_backups,
    routes_devices,
    routes_exports,
    routes_files,
    routes_jobs,
    routes_oauth,
)
from workers.ingress.errors import error_response
from workers.ingress.input_guard import guard_input
from workers.ingress.limits import BodySizeLimit
from workers.ingress.metrics import CachedCollector, JobsCollector
from workers.ingress.ops_metrics import OperationsCollector
from workers.ingress.ui import routes as routes_ui

log = structlog.get_logger("ingress")

STATUS_BY_CODE = {
    "unauthorized": 401,
    "api_key_expired": 401,
    "forbidden_scope": 403,
    "not_found": 404,
    "not_cancellable": 409,
    "kind_not_public": 403,
    "connection_owned_by_another_key": 409,
    "unknown_kind": 422,
    "invalid_payload": 422,
    "invalid_request": 422,
    "invalid_json": 400,
    "unknown_version": 422,
    "too_large": 413,
    "storage_unavailable": 503,
    "unknown_provider": 404,
    "provider_not_configured": 409,
    "invalid_state": 400,
    "authorization_failed": 400,
    "provider_error": 502,
    "database_unavailable": 503,
    "master_keys_missing": 503,
    "idempotency_mismatch": 422,
    "not_uploaded": 409,
    "type_not_allowed": 422,
    "internal_error": 500,
    "invalid_data_types": 422,
    "backup_not_ready": 409,
    "backup_running": 409,
    "backup_has_dependents": 409,
    "invalid_export": 422,
    "invalid_timezone": 422,
    "invalid_cron": 422,
    "unknown_user": 404,
    "anonymization_unavailable": 409,
    "rate_limited": 429,
    "queue_full": 429,
    "batch_too_much_work": 422,
    "too_many_backups": 429,
    "too_many_syncs": 429,
    "quota_exceeded": 409,
    "device_revoked": 403,
    "invalid_cursor": 422,
    "batch_not_uploaded": 409,
    "already_resolved": 409,
    "entity_gone": 409,
}


# Connections per ingress process, all kept open. A request holds one at a time, so a
# request beyond the pool waits for one (`pool_timeout`) instead of opening an overflow
# connection that is closed again on return: with 32 clients that churn was ~4 % of the
# server's CPU plus a backend started per request on PostgreSQL. The maximum is what it was
# (10 + 10 overflow).
INGRESS_DB_POOL = 20


def _handoff(settings: Settings) -> tuple[Handoff | None, AmqpPublisher | None]:
    """Accepted jobs are published by the ingress itself right after its commit (the relay
    is the fallback), unless switched off or there is no RabbitMQ (`conveyor dev`'s stub)."""
    if not (settings.submit_handoff and settings.broker_url):
        return None, None
    publisher = AmqpPublisher(settings.broker_url)
    dsn = libpq_dsn(settings.require_database_url())
    return Handoff(publisher, dsn, grace_s=settings.submit_handoff_grace_s), publisher


def create_app(
    settings: Settings,
    sessions: sessionmaker[Session] | None = None,
    store: ObjectStore | None = None,
    clock: Callable[[], datetime] | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = None
        if sessions is None:
            engine = make_engine(
                settings.require_database_url(),
                pool_size=INGRESS_DB_POOL,
                max_overflow=0,
                application_name="conveyor-ingress",
            )
            app.state.sessions = make_session_factory(engine)
        else:
            app.state.sessions = sessions
        app.state.store = store if store is not None else _default_store(settings)
        registry = CollectorRegistry()
        jobs = JobsCollector(app.state.sessions, settings.broker_url, settings.rabbitmq_api_url)
        ttl = settings.metrics_cache_s
        registry.register(CachedCollector(jobs, ttl))
        registry.register(CachedCollector(OperationsCollector(app.state.sessions), ttl))
        app.state.registry = registry
        app.state.oauth_http = make_http_client(settings.oauth_http_timeout_s)
        app.state.handoff, publisher = _handoff(settings)
        freeze_startup_heap()
        yield
        if app.state.handoff is not None:
            app.state.handoff.close()
        if publisher is not None:
            publisher.close()
        app.state.oauth_http.close()
        if engine is not None:
            engine.dispose()

    app = FastAPI(
        title="Conveyor ingress",
        version="1",
        lifespan=lifespan,
        dependencies=[Depends(guard_input)],
    )
    app.state.settings = settings
    app.state.clock = clock or (lambda: datetime.now(UTC))  # tests inject one (rate limits)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(routes_jobs.router)
    app.include_router(routes_files.router)
    app.include_router(routes_oauth.router)
    app.include_router(routes_backups.router)
    app.include_router(routes_exports.router)
    app.include_router(routes_devices.router)
    app.include_router(routes_audit.router)
    app.include_router(routes_ui.router)
    errors.install(app, STATUS_BY_CODE)
    openapi.install(app)
    _add_ops_routes(app)
    return app


def _default_store(settings: Settings) -> ObjectStore | None:
    """S3 when configured; without it the file routes answer 503 and the rest still works."""
    if not settings.s3_endpoint:
        return None
    from shared.storage.s3 import S3Store

    return S3Store.from_settings(settings)


def _metrics_refusal(request: Request) -> JSONResponse | None:
    """/metrics is behind a scrape token (docs/operations.md#metrics-access): it names kinds,
    queues and volumes, and each read costs database work."""
    settings: Settings = request.app.state.settings
    if settings.metrics_token is None:
        if settings.env == "production":
            return error_response(404, "not_found", "set CONVEYOR_METRICS_TOKEN to serve /metrics")
        return None
    expected = f"Bearer {settings.metrics_token.get_secret_value()}".encode()
    given = request.headers.get("authorization", "").encode()
    if not hmac.compare_digest(given, expected):
        return error_response(401, "unauthorized", "/metrics needs the scrape token (Bearer)")
    return None


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
            return error_response(503, "database_unavailable", type(exc).__name__)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        from prometheus_client import REGISTRY

        refused = _metrics_refusal(request)
        if refused is not None:
            return refused
        body = generate_latest(REGISTRY) + generate_latest(request.app.state.registry)
        return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)
