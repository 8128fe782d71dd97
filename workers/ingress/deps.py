"""Request dependencies: a DB session per request and the caller's API key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from shared.db.engine import session_scope
from shared.db.models import ApiKey
from shared.db.repos import api_keys as api_keys_repo
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


# Declares the `apiKey` bearer scheme in OpenAPI; our own error (401 `{code, message}`)
# instead of FastAPI's when it is missing.
bearer = HTTPBearer(
    scheme_name="apiKey", description="an API key: `conveyor apikey create`", auto_error=False
)


def api_key(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiKey:
    if credentials is None:
        raise Unauthorized("missing bearer API key")
    key = api_keys_repo.authenticate(session, credentials.credentials.strip())
    if key is None:
        raise Unauthorized("unknown or revoked API key")
    return key


ApiKeyDep = Annotated[ApiKey, Depends(api_key)]
