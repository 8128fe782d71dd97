"""API keys: only a SHA-256 of the secret is stored; the prefix finds the row.

Rotation keeps the key's id and prefix (its jobs, files and connections stay its own) and
replaces the secret; the replaced secret keeps working until `previous_valid_until`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, select, text
from sqlalchemy.orm import Session

from shared.db.models import ApiKey
from shared.db.tenancy import DEFAULT_TENANT
from shared.errors import PermanentError
from shared.scopes import DEFAULT_SCOPES

KEY_PREFIX = "cvk"


@dataclass(frozen=True)
class IssuedKey:
    id: uuid.UUID
    name: str
    token: str  # shown once, never stored
    is_admin: bool
    prefix: str = ""
    tenant_id: str = DEFAULT_TENANT


def _hash(secret: str) -> bytes:
    # Secrets are 256-bit random values, so a fast hash is enough (no password stretching).
    return hashlib.sha256(secret.encode()).digest()


def _split(token: str) -> tuple[str, str] | None:
    """`cvk_<prefix>_<secret>` → (prefix, secret); None for anything else."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    return parts[1], parts[2]


def _now() -> datetime:
    return datetime.now(UTC)


def create(
    session: Session,
    name: str,
    *,
    is_admin: bool = False,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
    tenant_id: str = DEFAULT_TENANT,
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
        scopes=[] if is_admin else list(scopes or DEFAULT_SCOPES),
        expires_at=expires_at,
    )
    session.add(key)
    session.flush()
    return IssuedKey(key.id, name, f"{KEY_PREFIX}_{prefix}_{secret}", is_admin, prefix, tenant_id)


def identify(session: Session, token: str, *, now: datetime | None = None) -> ApiKey | None:
    """The live (not revoked) key whose current or still-valid previous secret this is.
    Expiry is not checked here: the caller tells an expired key apart (401 api_key_expired).
    Runs across tenants, before the caller's tenant is known (as the owner); the caller then
    binds the session to `key.tenant_id`."""
    split = _split(token)
    if split is None:
        return None
    prefix, secret = split
    key = session.execute(
        select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
    ).scalar_one_or_none()
    if key is None:
        return None
    digest = _hash(secret)
    if hmac.compare_digest(key.secret_hash, digest):
        return key
    grace = key.previous_valid_until is not None and key.previous_valid_until > (now or _now())
    if grace and key.previous_secret_hash and hmac.compare_digest(key.previous_secret_hash, digest):
        return key
    return None


def is_expired(key: ApiKey, now: datetime | None = None) -> bool:
    return key.expires_at is not None and key.expires_at <= (now or _now())


# One statement per authenticated request: find the live key by prefix and secret (the
# current one, or the previous one within its grace), and if it has not expired spend one
# token of its rate-limit bucket. The bucket is GCRA (the "generic cell rate algorithm", a
# token bucket kept as one timestamp, `tat`): admit when the new theoretical arrival time is
# within `burst` intervals of now, under the row lock ON CONFLICT takes, so replicas racing
# on one key cannot both spend a token. The outer SELECT sees the bucket as it was before
# the statement: for a refused request (nothing spent) that is the bucket as it is.
# The digests compared here are SHA-256 of 256-bit secrets: a comparison's timing could
# only tell how many leading bytes of a hash match, which does not help find a secret.
_ADMIT = text(
    """
    WITH k AS (
        SELECT * FROM api_keys
        WHERE prefix = :prefix AND revoked_at IS NULL
          AND (secret_hash = :digest
               OR (previous_secret_hash = :digest AND previous_valid_until > :now))
    ), live AS (
        SELECT id, make_interval(secs => 1.0 / coalesce(rate_limit_per_s, :per_s)) AS step,
               coalesce(rate_limit_burst, :burst) AS burst
        FROM k WHERE expires_at IS NULL OR expires_at > :now
    ), spent AS (
        INSERT INTO rate_limit_buckets AS b (api_key_id, tat)
        SELECT id, CAST(:clock AS timestamptz) + step FROM live
        ON CONFLICT (api_key_id) DO UPDATE
          SET tat = greatest(b.tat, CAST(:clock AS timestamptz)) + (SELECT step FROM live)
          WHERE greatest(b.tat, CAST(:clock AS timestamptz)) + (SELECT step FROM live)
                <= CAST(:clock AS timestamptz) + (SELECT step * burst FROM live)
        RETURNING tat
    )
    SELECT k.*, EXISTS (SELECT FROM spent) AS admitted, b.tat AS bucket_tat
    FROM k LEFT JOIN rate_limit_buckets b ON b.api_key_id = k.id
    """
)
_KEY_COLUMNS = tuple(c.key for c in ApiKey.__table__.columns)


@dataclass(frozen=True)
class Admission:
    """What one request's key check found: `key` None for an unknown, revoked or wrong
    secret; an expired key spends nothing; else `wait_s` 0.0 when a token was spent, or the
    seconds until one is available (nothing spent)."""

    key: ApiKey | None
    expired: bool = False
    wait_s: float = 0.0
    per_s: float = 0.0
    burst: int = 0


def admit(conn: Connection, token: str, *, clock: datetime, per_s: float, burst: int) -> Admission:
    """Authenticate `token` and spend a token of its key's bucket, in ONE statement (atomic on
    its own: `conn` may be in autocommit). `clock` is the rate limiter's time; expiry and the
    rotation grace use the real time, like `identify`. `per_s`/`burst` are the defaults a
    key's own `rate_limit_per_s`/`_burst` override. The key comes back detached."""
    split = _split(token)
    if split is None:
        return Admission(None)
    prefix, secret = split
    now = _now()
    params = {
        "prefix": prefix,
        "digest": _hash(secret),
        "now": now,
        "clock": clock,
        "per_s": per_s,
        "burst": burst,
    }
    row = conn.execute(_ADMIT, params).one_or_none()
    if row is None:
        return Admission(None)
    key = ApiKey(**{column: getattr(row, column) for column in _KEY_COLUMNS})
    per_s, burst = key.rate_limit_per_s or per_s, key.rate_limit_burst or burst
    if is_expired(key, now):
        return Admission(key, expired=True, per_s=per_s, burst=burst)
    if row.admitted:
        return Admission(key, per_s=per_s, burst=burst)
    interval = timedelta(seconds=1.0 / per_s)
    tat = row.bucket_tat or clock  # no bucket and refused: a racing first spend; retry soon
    wait = max(tat, clock) + interval - (clock + interval * burst)
    return Admission(key, wait_s=max(wait.total_seconds(), 1e-3), per_s=per_s, burst=burst)


def authenticate(session: Session, token: str) -> ApiKey | None:
    """A key that may be used now: known, not revoked, not expired."""
    key = identify(session, token)
    return None if key is None or is_expired(key) else key


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.execute(select(ApiKey).order_by(ApiKey.created_at)).scalars())


class AmbiguousKeyName(PermanentError):
    """A key name used in several tenants, named without a tenant: the caller must choose."""

    code = "ambiguous_api_key_name"

    def __init__(self, name: str, tenants: list[str]) -> None:
        super().__init__(
            f"live keys named {name!r} exist in tenants {', '.join(tenants)}: name the tenant",
            name=name,
        )
        self.tenants = tenants


class KeyNotFound(PermanentError):
    """No live key with this prefix, or with this name in the tenant asked for."""

    code = "api_key_not_found"

    def __init__(self, message: str, *, elsewhere: list[str] | None = None) -> None:
        super().__init__(message)
        self.elsewhere = elsewhere or []  # tenants where a live key of that name exists


def resolve(session: Session, prefix_or_name: str, *, tenant_id: str | None) -> list[ApiKey]:
    """The live keys an operator means by `prefix_or_name` (`conveyor apikey revoke`).

    A prefix names one key (prefixes are unique across tenants); with `tenant_id` it must be
    that tenant's. A name resolves within one tenant only, to every live key of that name
    there: `tenant_id`, or without it the default tenant, unless the name is live in several
    tenants (AmbiguousKeyName: never several tenants' keys at once). KeyNotFound otherwise,
    with the tenants where the name does exist."""
    live = select(ApiKey).where(ApiKey.revoked_at.is_(None)).order_by(ApiKey.created_at)
    by_prefix = session.execute(live.where(ApiKey.prefix == prefix_or_name)).scalars().all()
    if by_prefix and tenant_id in (None, by_prefix[0].tenant_id):
        return list(by_prefix)
    named = list(session.execute(live.where(ApiKey.name == prefix_or_name)).scalars())
    tenants = sorted({key.tenant_id for key in named})
    if tenant_id is None and len(tenants) > 1:
        raise AmbiguousKeyName(prefix_or_name, tenants)
    wanted = tenant_id or DEFAULT_TENANT
    found = [key for key in named if key.tenant_id == wanted]
    if not found:
        raise KeyNotFound(
            f"no live key with prefix or name {prefix_or_name!r} in tenant {wanted!r}",
            elsewhere=[t for t in tenants if t != wanted],
        )
    return found


def revoke(session: Session, keys: list[ApiKey]) -> list[ApiKey]:
    """Revoke these keys at once (from `resolve`); returns them."""
    for key in keys:
        key.revoked_at = func.now()
    session.flush()
    return keys


def rotate(
    session: Session, prefix: str, *, grace: timedelta, now: datetime | None = None
) -> IssuedKey | None:
    """A new secret for the live key with this prefix; the old one stays valid for `grace`
    (zero: refused at once). A second rotation ends the first one's grace period."""
    key = session.execute(
        select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)).with_for_update()
    ).scalar_one_or_none()
    if key is None:
        return None
    at = now or _now()
    secret = secrets.token_urlsafe(32)
    if grace > timedelta(0):
        key.previous_secret_hash, key.previous_valid_until = key.secret_hash, at + grace
    else:
        key.previous_secret_hash, key.previous_valid_until = None, None
    key.secret_hash = _hash(secret)
    key.rotated_at = at
    session.flush()
    token = f"{KEY_PREFIX}_{prefix}_{secret}"
    return IssuedKey(key.id, key.name, token, key.is_admin, prefix, key.tenant_id)


def internal_key(session: Session, name: str, *, tenant_id: str = DEFAULT_TENANT) -> uuid.UUID:
    """A key no one holds (its secret is discarded), to scope a tool's idempotency keys.
    Looked up within `tenant_id` (the tool's jobs are that tenant's): a key of the same name
    in another tenant must not share its idempotency keys with the tool."""
    stmt = (
        select(ApiKey.id)
        .where(ApiKey.name == name, ApiKey.tenant_id == tenant_id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at)
        .limit(1)
    )
    found = session.execute(stmt).scalar_one_or_none()
    return found if found is not None else create(session, name, tenant_id=tenant_id).id
