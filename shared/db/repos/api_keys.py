"""API keys: only a SHA-256 of the secret is stored; the prefix finds the row."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db.models import ApiKey
from shared.db.tenancy import DEFAULT_TENANT

KEY_PREFIX = "cvk"


@dataclass(frozen=True)
class IssuedKey:
    id: uuid.UUID
    name: str
    token: str  # shown once, never stored
    is_admin: bool
    tenant_id: str = DEFAULT_TENANT


def _hash(secret: str) -> bytes:
    # Secrets are 256-bit random values, so a fast hash is enough (no password stretching).
    return hashlib.sha256(secret.encode()).digest()


def create(
    session: Session, name: str, *, is_admin: bool = False, tenant_id: str = DEFAULT_TENANT
) -> IssuedKey:
    """A key of `tenant_id` (which must exist); an admin key is admin within its tenant only."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        name=name,
        prefix=prefix,
        secret_hash=_hash(secret),
        is_admin=is_admin,
    )
    session.add(key)
    session.flush()
    return IssuedKey(key.id, name, f"{KEY_PREFIX}_{prefix}_{secret}", is_admin, tenant_id)


def authenticate(session: Session, token: str) -> ApiKey | None:
    """Find the live key for `token` across tenants: runs before the caller's tenant is known
    (as the owner); the caller then binds the session to `key.tenant_id`."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    _, prefix, secret = parts
    key = session.execute(
        select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    if key is None or not hmac.compare_digest(key.secret_hash, _hash(secret)):
        return None
    return key


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.execute(select(ApiKey).order_by(ApiKey.created_at)).scalars())


def revoke(session: Session, prefix_or_name: str) -> list[ApiKey]:
    """Revoke by prefix (exact key) or by name (every live key with it); returns the revoked."""
    stmt = select(ApiKey).where(
        ApiKey.revoked_at.is_(None),
        (ApiKey.prefix == prefix_or_name) | (ApiKey.name == prefix_or_name),
    )
    keys = list(session.execute(stmt).scalars())
    for key in keys:
        key.revoked_at = func.now()
    session.flush()
    return keys


def internal_key(session: Session, name: str) -> uuid.UUID:
    """A key no one holds (its secret is discarded), to scope a tool's idempotency keys."""
    stmt = (
        select(ApiKey.id)
        .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at)
        .limit(1)
    )
    found = session.execute(stmt).scalar_one_or_none()
    return found if found is not None else create(session, name).id
