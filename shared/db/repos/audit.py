"""All SQL about the audit log: append an event, page through events newest first."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, tuple_
from sqlalchemy.orm import Session

from shared.db import tenancy
from shared.db.models import ApiKey, AuditEvent
from shared.db.tenancy import DEFAULT_TENANT

# A details key that looks like it holds a secret is refused, not silently stored.
SECRET_WORDS = ("token", "secret", "password", "verifier", "key_material")


def _check_details(details: dict[str, Any]) -> None:
    for name, value in details.items():
        if name == "code" or any(word in name.lower() for word in SECRET_WORDS):
            raise ValueError(f"audit details may not hold {name!r}: secrets stay out of the log")
        if not isinstance(value, str | int | float | bool | None):
            raise ValueError(f"audit detail {name!r} must be a plain value")


def record(
    session: Session,
    *,
    action: str,
    target: str,
    actor: str,
    key: ApiKey | None = None,
    actor_key_id: uuid.UUID | None = None,
    user_id: str | None = None,
    tenant_id: str | None = None,
    **details: Any,
) -> None:
    """Append one event in the caller's transaction: it commits (or not) with the action.
    The tenant is `tenant_id`, else the acting key's, else the default tenant."""
    _check_details(details)
    # The session's acting tenant covers e.g. the OAuth callback (no key, runs as the tenant
    # that started the authorization): RLS would refuse a row of any other tenant.
    tenant = (
        tenant_id
        or (key.tenant_id if key is not None else None)
        or tenancy.tenant_of(session)
        or DEFAULT_TENANT
    )
    session.add(
        AuditEvent(
            tenant_id=tenant,
            actor=actor,
            actor_key_id=key.id if key is not None else actor_key_id,
            action=action,
            target=target,
            user_id=user_id,
            details=details,
        )
    )
    session.flush()


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None
    actor_key_id: uuid.UUID | None = None
    target: str | None = None
    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_events(
    session: Session,
    filters: AuditFilter,
    *,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[AuditEvent]:
    """Newest first; `after` is the (at, id) of the last event of the previous page."""
    stmt = select(AuditEvent).order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
    if filters.action is not None:
        # "apikey" matches every apikey.* action, "apikey.created" only itself.
        stmt = stmt.where(
            or_(
                AuditEvent.action == filters.action,
                AuditEvent.action.startswith(f"{filters.action}."),
            )
        )
    if filters.actor_key_id is not None:
        stmt = stmt.where(AuditEvent.actor_key_id == filters.actor_key_id)
    if filters.target is not None:
        stmt = stmt.where(AuditEvent.target == filters.target)
    if filters.user_id is not None:
        stmt = stmt.where(AuditEvent.user_id == filters.user_id)
    if filters.since is not None:
        stmt = stmt.where(AuditEvent.at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(AuditEvent.at < filters.until)
    if after is not None:
        stmt = stmt.where(tuple_(AuditEvent.at, AuditEvent.id) < tuple_(*after))
    return list(session.execute(stmt.limit(limit)).scalars())
