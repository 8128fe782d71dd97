"""Response bodies of the OAuth connection API. Tokens appear only in `TokenOut`."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from shared.db.models import OAuthConnection


class ConnectionOut(BaseModel):
    id: uuid.UUID
    user_id: str
    provider: str
    status: str
    expires_at: datetime | None
    scope: str | None
    instance_url: str | None
    api_domain: str | None
    last_refreshed_at: datetime | None
    refresh_count: int
    last_error_code: str | None
    provider_revoked: bool | None = None

    @classmethod
    def of(cls, c: OAuthConnection, *, provider_revoked: bool | None = None) -> ConnectionOut:
        return cls(
            id=c.id,
            user_id=c.user_id,
            provider=c.provider,
            status=c.status,
            expires_at=c.expires_at,
            scope=c.scope,
            instance_url=c.instance_url,
            api_domain=c.api_domain,
            last_refreshed_at=c.last_refreshed_at,
            refresh_count=c.refresh_count,
            last_error_code=c.last_error_code,
            provider_revoked=provider_revoked,
        )


class ConnectionPage(BaseModel):
    connections: list[ConnectionOut]


class TokenOut(BaseModel):
    access_token: str
    token_type: str
    expires_at: datetime | None
    instance_url: str | None
    api_domain: str | None

    @classmethod
    def of(cls, c: OAuthConnection, token: str, *, scheme: str) -> TokenOut:
        return cls(
            access_token=token,
            token_type=scheme,
            expires_at=c.expires_at,
            instance_url=c.instance_url,
            api_domain=c.api_domain,
        )
