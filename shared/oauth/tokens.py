"""Sealing tokens into a connection row: AES-256-GCM bound to table, column and row id
(shared/crypto.py `Binding`), so the access and refresh tokens cannot be swapped."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from shared.crypto import Binding, KeyRing
from shared.db.models import OAuthConnection
from shared.db.repos.outbox import outbox_row
from shared.messaging.names import EVENTS_EXCHANGE
from shared.oauth.token_response import TokenSet

NEEDS_REAUTH_ROUTING_KEY = "oauth.connection.needs_reauth"


TABLE = "oauth_connections"
TOKEN_COLUMNS = ("access_token_enc", "refresh_token_enc")


def binding(connection_id: uuid.UUID, column: str) -> Binding:
    """v1 tokens (before columns were bound) used the connection id alone."""
    return Binding(TABLE, column, connection_id.bytes, legacy=connection_id.bytes)


def access_token(ring: KeyRing, connection: OAuthConnection) -> str | None:
    if connection.access_token_enc is None:
        return None
    return ring.open(
        connection.access_token_enc, binding(connection.id, "access_token_enc")
    ).decode()


def refresh_token(ring: KeyRing, connection: OAuthConnection) -> str | None:
    if connection.refresh_token_enc is None:
        return None
    sealed = connection.refresh_token_enc
    return ring.open(sealed, binding(connection.id, "refresh_token_enc")).decode()


def apply_token_set(
    ring: KeyRing, connection: OAuthConnection, tokens: TokenSet, *, now: datetime
) -> None:
    """Store a token response: a missing refresh token / instance_url / api_domain keeps the
    stored one. Everything is (re-)encrypted with the current key."""
    keep_refresh = refresh_token(ring, connection) if tokens.refresh_token is None else None
    new_refresh = tokens.refresh_token or keep_refresh
    connection.access_token_enc = ring.seal(
        tokens.access_token.encode(), binding(connection.id, "access_token_enc")
    )
    connection.refresh_token_enc = (
        ring.seal(new_refresh.encode(), binding(connection.id, "refresh_token_enc"))
        if new_refresh
        else None
    )
    connection.token_key_id = ring.current_kid
    connection.expires_at = tokens.expires_at
    if tokens.scope is not None:
        connection.scope = " ".join(tokens.scope)
    if tokens.instance_url is not None:
        connection.instance_url = tokens.instance_url
    if tokens.api_domain is not None:
        connection.api_domain = tokens.api_domain
    connection.status = "active"
    connection.last_error_code = None
    connection.updated_at = now


def clear_tokens(connection: OAuthConnection) -> None:
    connection.access_token_enc = None
    connection.refresh_token_enc = None
    connection.expires_at = None


def needs_reauth_event(connection: OAuthConnection, *, error_code: str) -> dict[str, Any]:
    """Outbox row for `conveyor.events`, routing key `oauth.connection.needs_reauth`."""
    body = {
        "version": 1,
        "connection_id": str(connection.id),
        "user_id": connection.user_id,
        "provider": connection.provider,
        "status": connection.status,
        "error_code": error_code,
    }
    return outbox_row(
        exchange=EVENTS_EXCHANGE,
        routing_key=NEEDS_REAUTH_ROUTING_KEY,
        body=json.dumps(body, separators=(",", ":")).encode(),
    )
