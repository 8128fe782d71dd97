"""Request dependencies: a DB session per request and the caller's API key, with its scopes.

Every route takes one of the key dependencies, which enforce the scopes (shared/scopes.py):
- `ApiKeyDep`: any live key for safe methods (GET, HEAD); `write` (or admin) for the rest;
- `SubmitKeyDep`: job submission and cancel routes, which also accept `submit:<kind>` keys;
  the route checks the kind with `require_kind` once it has parsed the body;
- `AdminKeyDep`: admin-only routes (the audit log).
Unknown, revoked → 401 `unauthorized`; expired → 401 `api_key_expired`; a live key without
the scope → 403 `forbidden_scope`.

Authentication runs as the owner (a key is found by its prefix across tenants); from then on
the request's session acts as the key's tenant (shared/db/tenancy.py): every transaction of
the request runs as the RLS-bound app role with `conveyor.tenant_id` set.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated, Protocol

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from shared import scopes
from shared.db.engine import session_scope
from shared.db.models import ApiKey
from shared.db.repos import api_keys as api_keys_repo
from shared.db.tenancy import bind_tenant
from shared.errors import ConveyorError
from workers.ingress.quotas import rate_limited

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Unauthorized(ConveyorError):
    code = "unauthorized"


class ApiKeyExpired(ConveyorError):
    code = "api_key_expired"


class ForbiddenScope(ConveyorError):
    code = "forbidden_scope"


def db_session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed when the route returns and *before* the
    response is sent (`scope="function"`): a 2xx always means the writes are durable, and a
    failed commit becomes an error response instead of a 202 for a job that never existed."""
    with session_scope(request.app.state.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(db_session, scope="function")]


# Declares the `apiKey` bearer scheme in OpenAPI; our own error (401 `{code, message}`)
# instead of FastAPI's when it is missing.
bearer = HTTPBearer(
    scheme_name="apiKey", description="an API key: `conveyor apikey create`", auto_error=False
)


BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def admitted_key(
    request: Request, conn: Connection, credentials: HTTPAuthorizationCredentials | None
) -> ApiKey:
    """The caller's key, known, not revoked and not expired, after spending one token of its
    rate-limit bucket (429 if empty): one statement on `conn`, as the owner (a key is found
    by its prefix across tenants). No scope checked yet."""
    if credentials is None:
        raise Unauthorized("missing bearer API key")
    settings = request.app.state.settings
    admission = api_keys_repo.admit(
        conn,
        credentials.credentials.strip(),
        clock=request.app.state.clock(),
        per_s=settings.rate_limit_per_s,
        burst=settings.rate_limit_burst,
    )
    key = admission.key
    if key is None:
        raise Unauthorized("unknown or revoked API key")
    if admission.expired:
        assert key.expires_at is not None
        raise ApiKeyExpired(f"this API key expired at {key.expires_at.isoformat()}")
    if admission.wait_s > 0:
        raise rate_limited(admission)
    return key


def live_key(request: Request, session: SessionDep, credentials: BearerDep) -> ApiKey:
    """`admitted_key` in the request's session, committed before the request's own work
    begins: a request that fails later (a 4xx, a rollback) has still spent its token, and
    the request holds one pooled connection at a time (N concurrent requests on a pool of N
    never wait for a second one). From then on the session acts as the key's tenant."""
    key = admitted_key(request, session.connection(), credentials)
    session.commit()
    bind_tenant(session, key.tenant_id)
    return key


LiveKeyDep = Annotated[ApiKey, Depends(live_key)]

# The scope checks below are `async`: no I/O (the key's columns are loaded and stay loaded,
# expire_on_commit=False), so they run on the event loop instead of costing each request
# another hop to a worker thread and back.


async def api_key(request: Request, key: LiveKeyDep) -> ApiKey:
    if request.method not in SAFE_METHODS and not scopes.may_write(key.is_admin, key.scopes):
        raise ForbiddenScope(
            f"this key's scopes ({scopes.describe(key.is_admin, key.scopes)}) do not allow "
            f"{request.method} {request.url.path}"
        )
    return key


async def write_key(key: LiveKeyDep) -> ApiKey:
    """The `write` scope whatever the method: for GET routes that change something (starting
    an OAuth authorization stores state and leads to a stored connection)."""
    if not scopes.may_write(key.is_admin, key.scopes):
        raise ForbiddenScope(
            f"this key's scopes ({scopes.describe(key.is_admin, key.scopes)}) do not allow this"
        )
    return key


async def submit_key(key: LiveKeyDep) -> ApiKey:
    return require_submit(key)


async def submit_key_committed(request: Request, credentials: BearerDep) -> ApiKey:
    """`submit_key`'s checks (key, token, scope) in ONE worker-thread hop and a transaction of
    their own; the route then opens its own session in the key's tenant. For the busiest
    route: a hop per sync dependency (session open, key, route, session close) cost more CPU
    under 32 concurrent clients than the SQL. Still a dependency, so a bad key is refused
    before the body is validated (401 before 422), like every other route."""
    return await run_in_threadpool(_committed_submit_key, request, credentials)


def _committed_submit_key(
    request: Request, credentials: HTTPAuthorizationCredentials | None
) -> ApiKey:
    # The check is one statement, atomic on its own: no BEGIN/COMMIT round trips.
    engine: Engine = request.app.state.sessions.kw["bind"]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return require_submit(admitted_key(request, conn, credentials))


CommittedSubmitKeyDep = Annotated[ApiKey, Depends(submit_key_committed)]


def require_submit(key: ApiKey) -> ApiKey:
    if scopes.may_write(key.is_admin, key.scopes) or scopes.submit_kinds(key.scopes):
        return key
    raise ForbiddenScope(
        f"this key's scopes ({scopes.describe(key.is_admin, key.scopes)}) do not allow submitting"
    )


def require_kind(key: ApiKey, kind: str) -> None:
    if not scopes.may_submit(key.is_admin, key.scopes, kind):
        allowed = ", ".join(scopes.submit_kinds(key.scopes))
        raise ForbiddenScope(f"this key may submit only {allowed}, not {kind}", kind=kind)


async def admin_key(key: LiveKeyDep) -> ApiKey:
    if not key.is_admin:
        raise ForbiddenScope("this route needs an admin key")
    return key


ApiKeyDep = Annotated[ApiKey, Depends(api_key)]
WriteKeyDep = Annotated[ApiKey, Depends(write_key)]
SubmitKeyDep = Annotated[ApiKey, Depends(submit_key)]
AdminKeyDep = Annotated[ApiKey, Depends(admin_key)]


class KeyedRow(Protocol):
    tenant_id: str
    api_key_id: uuid.UUID | None


def may_see(key: ApiKey, row: KeyedRow) -> bool:
    """A row is the key's if it is of the key's tenant (checked here as well as by RLS) and
    the key made it, or the key is an admin of that tenant."""
    return row.tenant_id == key.tenant_id and (key.is_admin or row.api_key_id == key.id)
