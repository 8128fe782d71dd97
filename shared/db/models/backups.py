"""Backups of a user's product data (issue #8) and each user's backup schedule.

A backup row is created `pending` by whoever asks (API or scheduler) and becomes `completed`
only in the same transaction that records its job's success, after the encrypted object and
its manifest are in S3. `parent_id` is a RESTRICT foreign key: the database itself refuses
to drop a backup that a newer incremental still needs.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base, TenantOwned, new_uuid

BACKUP_TYPES = ("full", "incremental")
BACKUP_STATUSES = ("pending", "completed")


class Backup(TenantOwned, Base):
    __tablename__ = "backups"
    __table_args__ = (
        CheckConstraint("type IN ('full', 'incremental')", name="type"),
        CheckConstraint("status IN ('pending', 'completed')", name="status"),
        Index("ix_backups_user_created", "user_id", "created_at"),
        Index("ix_backups_parent_id", "parent_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)
    requested_type: Mapped[str] = mapped_column(String(20), nullable=False)
    type: Mapped[str] = mapped_column(String(20), nullable=False)  # what actually ran
    data_types: Mapped[list[str]] = mapped_column(ARRAY(String(50)), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("backups.id", ondelete="RESTRICT"), nullable=True
    )
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)
    restore_job_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), nullable=False, default=list
    )
    object_key: Mapped[str | None] = mapped_column(String(1024))
    manifest_key: Mapped[str | None] = mapped_column(String(1024))
    key_id: Mapped[str | None] = mapped_column(String(50))  # master key that wraps its data key
    since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    high_water_mark: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    row_counts: Mapped[dict[str, int] | None] = mapped_column(JSONB)
    plain_bytes: Mapped[int | None] = mapped_column(BigInteger)
    stored_bytes: Mapped[int | None] = mapped_column(BigInteger)
    manifest_digest: Mapped[str | None] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # sealed document, as in S3
    scheduled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BackupSettings(TenantOwned, Base):
    """A user's schedule: every `interval_s`, a backup of `data_types`; keep `keep_last`."""

    __tablename__ = "backup_settings"
    __table_args__ = (
        CheckConstraint("type IN ('full', 'incremental')", name="type"),
        Index("ix_backup_settings_due", "next_run_at", postgresql_where="enabled"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    interval_s: Mapped[int] = mapped_column(Integer, nullable=False)
    type: Mapped[str] = mapped_column(String(20), nullable=False)
    data_types: Mapped[list[str]] = mapped_column(ARRAY(String(50)), nullable=False)
    full_every: Mapped[int] = mapped_column(Integer, nullable=False, default=7)
    keep_last: Mapped[int] = mapped_column(Integer, nullable=False, default=14)
    next_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
