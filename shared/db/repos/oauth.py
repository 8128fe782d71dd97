"""All SQL about OAuth connections and pending authorization states."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    and_,
    cast,
    delete,
    exists,
    false,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Session

from shared.db.models import Job, OAuthConnection, OAuthState
from shared.db.tenancy import current_tenant

REFRESH_KIND = "oauth.refresh"
S: Table = OAuthState.__table__  # type: ignore[assignment]


def get(session: Session, connection_id: uuid.UUID) -> OAuthConnection | None:
    return session.get(OAuthConnection, connection_id)


def lock(session: Session, connection_id: uuid.UUID) -> OAuthConnection | None:
    """SELECT ... FOR UPDATE, re-reading the row even if the session holds it already."""
    stmt = (
        select(OAuthConnection)
        .where(OAuthConnection.id == connection_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.execute(stmt).scalar_one_or_none()


def lock_for_user(session: Session, user_id: str, provider: str) -> OAuthConnection | None:
    stmt = (
        select(OAuthConnection)
        .where(
            OAuthConnection.tenant_id == current_tenant(session),
            OAuthConnection.user_id == user_id,
            OAuthConnection.provider == provider,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.execute(stmt).scalar_one_or_none()


def add(session: Session, connection: OAuthConnection) -> None:
    session.add(connection)
    session.flush()


def list_connections(
    session: Session,
    *,
    api_key_id: uuid.UUID | None,
    user_id: str | None,
    provider: str | None,
    limit: int,
) -> list[OAuthConnection]:
    stmt = (
        select(OAuthConnection)
        .where(OAuthConnection.tenant_id == current_tenant(session))
        .order_by(OAuthConnection.created_at, OAuthConnection.id)
    )
    if api_key_id is not None:
        stmt = stmt.where(OAuthConnection.api_key_id == api_key_id)
    if user_id is not None:
        stmt = stmt.where(OAuthConnection.user_id == user_id)
    if provider is not None:
        stmt = stmt.where(OAuthConnection.provider == provider)
    return list(session.execute(stmt.limit(limit)).scalars())


def add_state(session: Session, row: dict[str, Any]) -> None:
    session.execute(S.insert(), [row])


def take_state(session: Session, nonce: str) -> OAuthState | None:
    """Delete and return the pending state: a second callback with it finds nothing."""
    stmt = delete(OAuthState).where(OAuthState.nonce == nonce).returning(OAuthState)
    return session.execute(stmt).scalar_one_or_none()


def prune_states(session: Session, now: datetime) -> None:
    session.execute(delete(S).where(S.c.expires_at < now))


FAILED_BACKOFF = timedelta(minutes=5)


def _refresh_job_pending(now: datetime) -> ColumnElement[bool]:
    """A refresh job queued or running, or one that failed recently (no resubmit storm)."""
    return exists().where(
        Job.kind == REFRESH_KIND,
        Job.payload["connection_id"].astext == cast(OAuthConnection.id, String),
        or_(
            Job.state.in_(("queued", "running")),
            and_(Job.state.in_(("failed", "dead")), Job.finished_at > now - FAILED_BACKOFF),
        ),
    )


def due_for_refresh(
    session: Session,
    *,
    now: datetime,
    margin: timedelta,
    idle_lifetimes: Mapping[str, timedelta],
    idle_margin: Mapping[str, timedelta],
    limit: int,
) -> list[tuple[uuid.UUID, str, str]]:
    """Active connections whose access token expires within `margin` (or whose refresh
    token nears its idle lifetime) and that have no refresh job queued or running."""
    idle = [
        and_(
            OAuthConnection.provider == provider,
            func.coalesce(OAuthConnection.last_refreshed_at, OAuthConnection.created_at)
            <= now - lifetime + idle_margin[provider],
        )
        for provider, lifetime in idle_lifetimes.items()
    ]
    stmt = (
        select(OAuthConnection.id, OAuthConnection.user_id, OAuthConnection.tenant_id)
        .where(
            OAuthConnection.status == "active",
            or_(
                OAuthConnection.expires_at.is_(None),
                OAuthConnection.expires_at <= now + margin,
                *idle,
                false(),
            ),
            ~_refresh_job_pending(now),
        )
        .order_by(OAuthConnection.expires_at.nulls_first())
        .limit(limit)
    )
    return [(row[0], row[1], row[2]) for row in session.execute(stmt)]
