"""Tenants: created and listed by operators (`conveyor tenant create|list`), as the owner."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import Tenant, User
from shared.db.tenancy import TENANT_ID_PATTERN, tenant_of
from shared.errors import PermanentError


class InvalidTenant(PermanentError):
    code = "invalid_tenant"


def validate_id(tenant_id: str) -> str:
    if not re.fullmatch(TENANT_ID_PATTERN, tenant_id):
        raise InvalidTenant(
            f"tenant id {tenant_id!r} must match {TENANT_ID_PATTERN}", tenant_id=tenant_id
        )
    return tenant_id


def create(session: Session, tenant_id: str, name: str) -> bool:
    """Create the tenant; False when it exists already (the name is left as it was)."""
    stmt = (
        insert(Tenant)
        .values(id=validate_id(tenant_id), name=name)
        .on_conflict_do_nothing()
        .returning(Tenant.id)
    )
    return session.execute(stmt).scalar_one_or_none() is not None


def get(session: Session, tenant_id: str) -> Tenant | None:
    return session.get(Tenant, tenant_id)


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.execute(select(Tenant).order_by(Tenant.created_at, Tenant.id)).scalars())


def product_user_visible(session: Session, user_id: uuid.UUID) -> bool:
    """Whether the product user is live in the session's tenant. Work that reads or writes a
    user's data over an owner connection (backups, exports: ADBC, staging tables) bypasses
    row-level security, so it asks this first through the tenant-bound session: another
    tenant's user id is then "not found". (An owner session, e.g. the CLI, sees them all.)"""
    stmt = select(User.id).where(User.id == user_id, User.deleted_at.is_(None))
    tenant = tenant_of(session)
    if tenant is not None:
        stmt = stmt.where(User.tenant_id == tenant)  # RLS filters too; this says it in code
    return session.execute(stmt).first() is not None
