"""The authorization-code flow: start (state + PKCE), finish (exchange, store), disconnect.

Functions take the session, key ring, HTTP client and time as arguments and never commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy.orm import Session

from shared.crypto import Binding, KeyRing
from shared.db.models import OAuthConnection
from shared.db.repos import oauth as oauth_repo
from shared.db.tenancy import DEFAULT_TENANT
from shared.errors import ConveyorError, PermanentError
from shared.oauth import tokens
from shared.oauth.clients import OAuthClient
from shared.oauth.providers import authorization_url
from shared.oauth.state import (
    code_challenge,
    new_code_verifier,
    new_nonce,
    sign_state,
    state_keys,
    verify_state,
)
from shared.oauth.token_client import Clock, exchange_code, revoke
from shared.oauth.token_response import TokenError, TokenErrorKind

log = structlog.get_logger("oauth")


class InvalidState(PermanentError):
    code = "invalid_state"


class AuthorizationFailed(PermanentError):
    """The provider refused the code (or the user denied access): connect again."""

    code = "authorization_failed"


class ConnectionOwned(PermanentError):
    """Another API key already holds this user's connection to this provider."""

    code = "connection_owned_by_another_key"


def _ensure_owner(
    session: Session, user_id: str, provider: str, api_key_id: uuid.UUID | None
) -> OAuthConnection | None:
    connection = oauth_repo.lock_for_user(session, user_id, provider)
    if connection is not None and connection.api_key_id != api_key_id:
        raise ConnectionOwned(
            "this user's connection to the provider belongs to another API key",
            user_id=user_id,
            provider=provider,
        )
    return connection


class ProviderUnavailable(ConveyorError):
    """The provider failed, or rejected our client credentials: not the user's fault."""

    code = "provider_error"


def verifier_binding(nonce: str) -> Binding:
    """The PKCE verifier of a pending authorization (v1: bound to the nonce alone)."""
    return Binding("oauth_states", "code_verifier_enc", nonce.encode(), legacy=nonce.encode())


@dataclass(frozen=True)
class PendingAuthorization:
    provider: str
    user_id: str
    api_key_id: uuid.UUID | None
    code_verifier: str | None = field(repr=False)
    tenant_id: str = DEFAULT_TENANT  # the callback completes the authorization as this tenant


def begin_authorization(
    session: Session,
    ring: KeyRing,
    client: OAuthClient,
    *,
    user_id: str,
    api_key_id: uuid.UUID | None,
    now: datetime,
    ttl: timedelta,
) -> str:
    """Record a single-use state and return the provider URL to send the user to."""
    _ensure_owner(session, user_id, client.provider.name.value, api_key_id)
    nonce = new_nonce()
    verifier = new_code_verifier() if client.provider.supports_pkce else None
    sealed = ring.seal(verifier.encode(), verifier_binding(nonce)) if verifier else None
    oauth_repo.prune_states(session, now)
    oauth_repo.add_state(
        session,
        {
            "nonce": nonce,
            "provider": client.provider.name.value,
            "user_id": user_id,
            "api_key_id": api_key_id,
            "code_verifier_enc": sealed,
            "expires_at": now + ttl,
        },
    )
    return authorization_url(
        client.provider,
        client_id=client.client_id,
        redirect_uri=client.redirect_uri,
        state=sign_state(state_keys(ring)[0], nonce),
        scopes=client.scopes,
        code_challenge=code_challenge(verifier) if verifier else None,
    )


def take_pending(
    session: Session, ring: KeyRing, *, provider: str, state: str, now: datetime
) -> PendingAuthorization:
    """Validate `state` (signature, single use, expiry, provider) and consume it."""
    nonce = verify_state(state_keys(ring), state)
    if nonce is None:
        raise InvalidState("state is not one of ours")
    row = oauth_repo.take_state(session, nonce)
    if row is None:
        raise InvalidState("state unknown or already used")
    if row.expires_at <= now:
        raise InvalidState("state expired; start the authorization again")
    if row.provider != provider:
        raise InvalidState("state was issued for another provider")
    verifier = None
    if row.code_verifier_enc is not None:
        verifier = ring.open(row.code_verifier_enc, verifier_binding(nonce)).decode()
    return PendingAuthorization(row.provider, row.user_id, row.api_key_id, verifier, row.tenant_id)


def complete_authorization(
    session: Session,
    ring: KeyRing,
    http: httpx.Client,
    client: OAuthClient,
    pending: PendingAuthorization,
    *,
    code: str,
    clock: Clock,
) -> OAuthConnection:
    """Exchange the code and store the tokens (re-using the user's existing connection)."""
    _ensure_owner(session, pending.user_id, pending.provider, pending.api_key_id)
    result = exchange_code(
        http, client, code=code, code_verifier=pending.code_verifier, clock=clock
    )
    if isinstance(result, TokenError):
        raise _exchange_error(client, result)
    now = clock()
    connection = _ensure_owner(session, pending.user_id, pending.provider, pending.api_key_id)
    if connection is None:
        connection = OAuthConnection(
            id=uuid.uuid4(),
            user_id=pending.user_id,
            provider=pending.provider,
            status="active",
            refresh_count=0,
            recent_token_requests=[],
        )
        oauth_repo.add(session, connection)
    connection.api_key_id = pending.api_key_id
    connection.accounts_server = client.provider.accounts_server
    connection.last_refreshed_at = now
    tokens.apply_token_set(ring, connection, result, now=now)
    session.flush()
    log.info(
        "oauth.connection_stored",
        connection_id=str(connection.id),
        provider=connection.provider,
        user_id=connection.user_id,
    )
    return connection


def _exchange_error(client: OAuthClient, error: TokenError) -> ConveyorError:
    if error.kind is TokenErrorKind.INVALID_GRANT:
        return AuthorizationFailed("the provider refused the authorization code")
    if error.kind is TokenErrorKind.INVALID_CLIENT:
        log.error(
            "oauth.client_rejected",
            provider=client.provider.name.value,
            status_code=error.status_code,
            error=error.error,
        )
    return ProviderUnavailable(f"token exchange failed: {error.kind.value}")


def disconnect(
    session: Session,
    ring: KeyRing,
    http: httpx.Client,
    client: OAuthClient | None,
    connection_id: uuid.UUID,
) -> tuple[OAuthConnection | None, bool]:
    """Revoke at the provider (where supported), forget the tokens, mark revoked.
    Returns the connection and whether the provider confirmed the revocation."""
    connection = oauth_repo.lock(session, connection_id)
    if connection is None:
        return None, False
    refresh_token = tokens.refresh_token(ring, connection)
    token = refresh_token or tokens.access_token(ring, connection)
    confirmed = False
    if client is not None and token is not None:
        hint = "refresh_token" if refresh_token else "access_token"
        confirmed = revoke(http, client, token=token, hint=hint)
    tokens.clear_tokens(connection)
    connection.status = "revoked"
    log.info("oauth.connection_revoked", connection_id=str(connection.id), confirmed=confirmed)
    return connection, confirmed
