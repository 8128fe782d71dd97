"""Request dependencies: a DB session per request and the caller's API key.

Authentication runs as the owner (a key is found by its prefix across tenants); from then on
the request's session acts as the key's tenant (shared/db/tenancy.py): every transaction of
the request runs as the RLS-bound app role with `conveyor.tenant_id` set.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated, Protocol

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from shared.db.engine import session_scope
from shared.db.models import ApiKey
from shared.db.repos import api_keys as api_keys_repo
from shared.db.tenancy import bind_tenant
from shared.errors import ConveyorError


class Unauthorized(ConveyorError):
    code = "unauthorized"


def db_session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed when the route returns and *before* the
    response is sent (`scope="function"`): a 2xx always means the writes are durable, and a
    failed commit becomes an error response instead of a 202 for a job that never existed."""
    with session_scope(request.app.state.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(db_session, scope="function")]


def api_key(session: SessionDep, authorization: Annotated[str | None, Header()] = None) -> ApiKey:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer API key")
    key = api_keys_repo.authenticate(session, authorization[7:].strip())
    if key is None:
        raise Unauthorized("unknown or revoked API key")
    tenant_id = key.tenant_id  # read before the switch: api_keys is tenant-scoped too
    bind_tenant(session, tenant_id)
    return key


ApiKeyDep = Annotated[ApiKey, Depends(api_key)]


class KeyedRow(Protocol):
    tenant_id: str
    api_key_id: uuid.UUID | None


def may_see(key: ApiKey, row: KeyedRow) -> bool:
    """A row is the key's if it is of the key's tenant (checked here as well as by RLS) and
    the key made it, or the key is an admin of that tenant."""
    return row.tenant_id == key.tenant_id and (key.is_admin or row.api_key_id == key.id)
