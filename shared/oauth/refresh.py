"""Refresh one connection's access token, at most one refresher at a time.

`refresh_connection` locks the row (SELECT ... FOR UPDATE), re-reads it, returns early if
another process refreshed it meanwhile, calls the token endpoint and stores the new tokens,
all in the caller's transaction. It never raises for provider errors: it records them on the
row and returns an outcome, so the caller can commit (a rotated refresh token must never be
lost) and only then fail the job or the request. Used by the `oauth.refresh` job and by the
ingress token API alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy.orm import Session

from shared.crypto import KeyRing
from shared.db.models import OAuthConnection
from shared.db.repos import oauth as oauth_repo
from shared.db.repos import outbox as outbox_repo
from shared.oauth import policy, tokens
from shared.oauth.clients import OAuthClient
from shared.oauth.token_client import refresh_grant
from shared.oauth.token_response import TokenError, TokenErrorKind, TokenSet

log = structlog.get_logger("oauth")

ClientFor = Callable[[OAuthConnection], OAuthClient]


@dataclass(frozen=True)
class RefreshDeps:
    ring: KeyRing
    client_for: ClientFor
    http: httpx.Client
    clock: Callable[[], datetime]
    margin: timedelta


@dataclass(frozen=True)
class RefreshOutcome:
    """refreshed | fresh | needs_reauth | invalid_client | retry | error | inactive | missing"""

    status: str
    connection_id: uuid.UUID
    error: str | None = None
    retry_after: float | None = None
    expires_at: datetime | None = None


def is_due(connection: OAuthConnection, client: OAuthClient, deps: RefreshDeps) -> bool:
    return policy.refresh_due(
        now=deps.clock(),
        expires_at=connection.expires_at,
        last_used_at=connection.last_refreshed_at or connection.created_at,
        margin=deps.margin,
        idle_lifetime=client.provider.refresh_token_idle_lifetime,
    )


def refresh_connection(
    session: Session,
    deps: RefreshDeps,
    connection_id: uuid.UUID,
    *,
    force: bool = False,
    owner: str | None = None,
) -> RefreshOutcome:
    """With `owner`, another user's connection is "missing": untouched, existence not revealed."""
    connection = oauth_repo.lock(session, connection_id)
    if connection is None or (owner is not None and connection.user_id != owner):
        return RefreshOutcome("missing", connection_id)
    if connection.status != "active":
        return RefreshOutcome("inactive", connection_id, error=connection.status)
    client = deps.client_for(connection)
    if not force and not is_due(connection, client, deps):
        return RefreshOutcome("fresh", connection_id, expires_at=connection.expires_at)
    now = deps.clock()
    limit = client.provider.token_rate_limit
    wait = policy.rate_limit_wait(connection.recent_token_requests, now, limit)
    if wait is not None:
        log.info("oauth.refresh_throttled", connection_id=str(connection_id), wait_s=wait)
        return RefreshOutcome("retry", connection_id, error="rate_limited", retry_after=wait)
    refresh_token = tokens.refresh_token(deps.ring, connection)
    if refresh_token is None:
        return _needs_reauth(session, connection, "no_refresh_token")
    requests = [*policy.recent_requests(connection.recent_token_requests, now, limit), now]
    result = refresh_grant(deps.http, client, refresh_token=refresh_token, clock=deps.clock)
    if isinstance(result, TokenSet):
        connection.recent_token_requests = requests if limit else []
        return _refreshed(deps, connection, result, now)
    return _failed(session, connection, result, requests if limit else [])


def _refreshed(
    deps: RefreshDeps, connection: OAuthConnection, result: TokenSet, now: datetime
) -> RefreshOutcome:
    tokens.apply_token_set(deps.ring, connection, result, now=now)
    connection.last_refreshed_at = now
    connection.refresh_count += 1
    log.info(
        "oauth.connection_refreshed",
        connection_id=str(connection.id),
        provider=connection.provider,
        expires_at=result.expires_at.isoformat(),
    )
    return RefreshOutcome("refreshed", connection.id, expires_at=result.expires_at)


def _needs_reauth(session: Session, connection: OAuthConnection, code: str) -> RefreshOutcome:
    connection.status = "needs_reauth"
    connection.last_error_code = code
    outbox_repo.add_many(session, [tokens.needs_reauth_event(connection, error_code=code)])
    log.warning(
        "oauth.connection_needs_reauth",
        connection_id=str(connection.id),
        provider=connection.provider,
        user_id=connection.user_id,
        code=code,
    )
    return RefreshOutcome("needs_reauth", connection.id, error=code)


def _failed(
    session: Session, connection: OAuthConnection, error: TokenError, requests: list[datetime]
) -> RefreshOutcome:
    code = error.error or error.kind.value
    if error.kind is TokenErrorKind.INVALID_CLIENT:
        # Our credentials are wrong: nothing about the connection changed. Loud: an operator
        # must fix the configuration; every connection of this provider is affected.
        log.error(
            "oauth.client_rejected",
            provider=connection.provider,
            connection_id=str(connection.id),
            status_code=error.status_code,
            error=error.error,
        )
        return RefreshOutcome("invalid_client", connection.id, error="invalid_client")
    connection.recent_token_requests = requests
    if error.kind is TokenErrorKind.INVALID_GRANT:
        return _needs_reauth(session, connection, code)
    connection.last_error_code = code
    if error.retryable:
        log.warning(
            "oauth.refresh_failed",
            connection_id=str(connection.id),
            kind=error.kind.value,
            status_code=error.status_code,
            retry_after=error.retry_after,
        )
        return RefreshOutcome("retry", connection.id, error=code, retry_after=error.retry_after)
    connection.status = "error"
    log.error(
        "oauth.refresh_rejected",
        connection_id=str(connection.id),
        status_code=error.status_code,
        error=error.error,
    )
    return RefreshOutcome("error", connection.id, error=code)


def valid_access_token(
    session: Session, deps: RefreshDeps, connection_id: uuid.UUID
) -> tuple[RefreshOutcome, OAuthConnection | None]:
    """Refresh first if due (through the same lock); the connection to read the token from."""
    connection = oauth_repo.get(session, connection_id)
    if connection is None:
        return RefreshOutcome("missing", connection_id), None
    if connection.status == "active" and not is_due(connection, deps.client_for(connection), deps):
        return RefreshOutcome("fresh", connection_id, expires_at=connection.expires_at), connection
    outcome = refresh_connection(session, deps, connection_id)
    return outcome, oauth_repo.get(session, connection_id)
