"""/v1/oauth (connect flow) and /v1/connections (status, disconnect, access tokens)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.crypto import KeyRing
from shared.db.engine import session_scope
from shared.db.models import ApiKey, OAuthConnection
from shared.db.repos import audit as audit_repo
from shared.db.repos import oauth as oauth_repo
from shared.db.tenancy import tenant_sessions
from shared.errors import ConveyorError
from shared.oauth import connect, tokens
from shared.oauth.clients import (
    ProviderNotConfigured,
    configured_client,
    provider_name,
    provider_statuses,
)
from shared.oauth.providers import (
    ProviderConfigError,
    ProviderName,
    zoho_accounts_server_from_callback,
)
from shared.oauth.refresh import RefreshDeps, RefreshOutcome, valid_access_token
from workers.ingress.deps import ApiKeyDep, SessionDep, WriteKeyDep, may_see
from workers.ingress.schemas_oauth import ConnectionOut, ConnectionPage, TokenOut

router = APIRouter(tags=["oauth"])

MAX_PAGE = 500


class ConnectionNotFound(ConveyorError):
    code = "not_found"


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _ring(request: Request) -> KeyRing:
    return _settings(request).key_ring()


def _http(request: Request) -> httpx.Client:
    http: httpx.Client = request.app.state.oauth_http
    return http


def _now() -> datetime:
    return datetime.now(UTC)


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


@router.get("/v1/oauth/providers")
def providers(request: Request, key: ApiKeyDep) -> dict[str, str]:
    settings = _settings(request)
    statuses = provider_statuses(settings)
    if settings.master_keys is None:  # a client without a key ring cannot connect anything
        missing = "not configured: CONVEYOR_MASTER_KEYS is not set"
        return {name: missing if s == "configured" else s for name, s in statuses.items()}
    return statuses


@router.get("/v1/oauth/{provider}/authorize", status_code=302)
def authorize(
    provider: str,
    request: Request,
    session: SessionDep,
    key: WriteKeyDep,
    user_id: Annotated[str, Query(min_length=1, max_length=200)],
) -> RedirectResponse:
    settings = _settings(request)
    client = configured_client(settings, provider)
    ring = settings.key_ring()  # before any state row: 503 master_keys_missing, not a 500
    url = connect.begin_authorization(
        session,
        ring,
        client,
        user_id=user_id,
        api_key_id=key.id,
        now=_now(),
        ttl=timedelta(seconds=settings.oauth_state_ttl_s),
    )
    return RedirectResponse(url, status_code=302)


@router.get("/v1/oauth/{provider}/callback", response_model=ConnectionOut)
def callback(provider: str, request: Request) -> ConnectionOut | JSONResponse:
    """Where the provider sends the user back; authenticated by `state`, not an API key."""
    name = provider_name(provider)
    params = dict(request.query_params)
    sessions = request.app.state.sessions
    ring = _ring(request)
    with session_scope(sessions) as session:  # consumed even if the exchange fails below
        pending = connect.take_pending(
            session, ring, provider=name.value, state=params.get("state", ""), now=_now()
        )
    if "error" in params:
        return _error(400, "authorization_denied", f"provider said {params['error'][:100]}")
    if not params.get("code"):
        return _error(400, "invalid_request", "callback without code")
    accounts_server = None
    if name is ProviderName.ZOHO:
        try:
            accounts_server = zoho_accounts_server_from_callback(params)
        except ProviderConfigError:
            return _error(400, "untrusted_accounts_server", "unknown Zoho accounts server")
    client = configured_client(_settings(request), name.value, accounts_server=accounts_server)
    # The state named the tenant (it was stored by a key of that tenant): act as it now.
    with session_scope(tenant_sessions(sessions, pending.tenant_id)) as session:
        connection = connect.complete_authorization(
            session, ring, _http(request), client, pending, code=params["code"], clock=_now
        )
        audit_repo.record(
            session,
            action="oauth.connected",
            target=f"connection:{connection.id}",
            actor="callback",
            actor_key_id=pending.api_key_id,
            user_id=connection.user_id,
            provider=connection.provider,
        )
        return ConnectionOut.of(connection)


def _visible(session: Session, key: ApiKey, connection_id: uuid.UUID) -> OAuthConnection:
    connection = oauth_repo.get(session, connection_id)
    if connection is None or not may_see(key, connection):
        raise ConnectionNotFound("no such connection", connection_id=connection_id)
    return connection


@router.get("/v1/connections", response_model=ConnectionPage)
def list_connections(
    session: SessionDep,
    key: ApiKeyDep,
    user_id: str | None = None,
    provider: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> ConnectionPage:
    rows = oauth_repo.list_connections(
        session,
        api_key_id=None if key.is_admin else key.id,
        user_id=user_id,
        provider=provider,
        limit=limit,
    )
    return ConnectionPage(connections=[ConnectionOut.of(c) for c in rows])


@router.get("/v1/connections/{connection_id:uuid}", response_model=ConnectionOut)
def get_connection(connection_id: uuid.UUID, session: SessionDep, key: ApiKeyDep) -> ConnectionOut:
    return ConnectionOut.of(_visible(session, key, connection_id))


@router.delete("/v1/connections/{connection_id:uuid}", response_model=ConnectionOut)
def delete_connection(
    connection_id: uuid.UUID, request: Request, session: SessionDep, key: ApiKeyDep
) -> ConnectionOut:
    connection = _visible(session, key, connection_id)
    try:
        client = configured_client(
            _settings(request), connection.provider, accounts_server=connection.accounts_server
        )
    except ProviderNotConfigured:
        client = None  # still forget the tokens locally
    revoked, confirmed = connect.disconnect(
        session, _ring(request), _http(request), client, connection_id
    )
    assert revoked is not None
    audit_repo.record(
        session,
        action="oauth.revoked",
        target=f"connection:{connection_id}",
        actor="api",
        key=key,
        user_id=revoked.user_id,
        provider=revoked.provider,
        provider_confirmed=confirmed,
    )
    return ConnectionOut.of(revoked, provider_revoked=confirmed)


def refresh_deps(request: Request) -> RefreshDeps:
    settings = _settings(request)
    return RefreshDeps(
        ring=settings.key_ring(),
        client_for=lambda c: configured_client(
            settings, c.provider, accounts_server=c.accounts_server
        ),
        http=_http(request),
        clock=_now,
        margin=timedelta(seconds=settings.oauth_refresh_margin_s),
    )


@router.post("/v1/connections/{connection_id:uuid}/token", response_model=TokenOut)
def access_token(
    connection_id: uuid.UUID, request: Request, session: SessionDep, key: ApiKeyDep
) -> TokenOut | JSONResponse:
    """A valid access token, refreshed first (under the row lock) if it expires soon.
    Failures are returned, not raised, so that what the refresh recorded is committed."""
    _visible(session, key, connection_id)
    deps = refresh_deps(request)
    outcome, connection = valid_access_token(session, deps, connection_id)
    if outcome.status in ("fresh", "refreshed") and connection is not None:
        token = tokens.access_token(deps.ring, connection)
        client = deps.client_for(connection)
        if token is not None:
            audit_repo.record(
                session,
                action="oauth.token_read",
                target=f"connection:{connection_id}",
                actor="api",
                key=key,
                user_id=connection.user_id,
                provider=connection.provider,
                refreshed=outcome.status == "refreshed",
            )
            return TokenOut.of(connection, token, scheme=client.provider.api_auth_scheme)
    return _refresh_error(outcome)


def _refresh_error(outcome: RefreshOutcome) -> JSONResponse:
    if outcome.status == "needs_reauth":
        return _error(409, "needs_reauth", "the user must authorize again")
    if outcome.status == "inactive":
        return _error(409, "connection_inactive", f"connection is {outcome.error}")
    if outcome.status == "invalid_client":
        return _error(502, "invalid_client", "the provider rejected our client credentials")
    if outcome.status == "retry":
        wait = str(math.ceil(outcome.retry_after)) if outcome.retry_after else "5"
        return _error(503, "provider_unavailable", "try again later", **{"Retry-After": wait})
    if outcome.status == "missing":
        return _error(404, "not_found", "no such connection")
    return _error(502, "provider_error", f"refresh failed: {outcome.error}")
