"""Declarative base shared by every table; one metadata object for Alembic."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, MetaData, Text, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names keep Alembic migrations reviewable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def new_uuid() -> uuid.UUID:
    return uuid.uuid4()


class Timestamps:
    """created/updated timestamps plus a soft-delete tombstone.

    Incremental backup and device sync read changes by `updated_at` and see
    deletions through `deleted_at`, so rows are never hard-deleted by the product.
    """

    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


# Rows written inside a tenant-scoped transaction default to its tenant; rows written as the
# owner with no tenant set default to 'default' (migration 0010 backfilled existing rows).
TENANT_DEFAULT_SQL = "coalesce(nullif(current_setting('conveyor.tenant_id', true), ''), 'default')"


class TenantOwned:
    """A row of one tenant: RLS (migration 0010_tenancy) shows it only to that tenant."""

    tenant_id: Mapped[str] = mapped_column(
        Text, nullable=False, server_default=text(TENANT_DEFAULT_SQL)
    )
