"""Device sync (issue #10): devices, per-user sync settings, registers, conflicts, batches.

The product tables stay as they are; the per-field hybrid-logical-clock metadata that the
merge needs lives in `sync_registers`, one row per (user, entity) holding every register of
the entity. The field `_deleted` is the entity's tombstone register.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base, TenantOwned

SYNC_TYPES = ("contact", "task", "decision", "setting", "channel", "message")


def _user_fk() -> ForeignKey:
    return ForeignKey("users.id", ondelete="CASCADE")


class SyncDevice(TenantOwned, Base):
    """A registered device. Only a SHA-256 of its secret is stored; the secret is shown once."""

    __tablename__ = "sync_devices"
    __table_args__ = (Index("ix_sync_devices_user", "user_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), _user_fk(), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    platform: Mapped[str] = mapped_column(String(50), nullable=False)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SyncSettings(TenantOwned, Base):
    """Per user: what syncs and how often; also the row each sync locks (one sync per user at
    a time) and the server's hybrid logical clock for that user."""

    __tablename__ = "sync_settings"

    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), _user_fk(), primary_key=True)
    types: Mapped[list[str]] = mapped_column(ARRAY(String(20)), nullable=False)
    interval_s: Mapped[int] = mapped_column(Integer, nullable=False)
    hlc_ms: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    hlc_counter: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class SyncRegisters(TenantOwned, Base):
    """Every register of one entity: `{field: [hlc_ms, hlc_counter, node, value,
    applied_at_us]}` (`_deleted` is the tombstone register). One row per entity rather than per
    field: a sync reads, decodes and writes 5x fewer rows (migration 0013_sync_registers)."""

    __tablename__ = "sync_registers"
    # Updated far more than inserted: free space on each page lets an update stay on its page
    # without a new index entry (HOT).
    __table_args__ = {"postgresql_with": {"fillfactor": 80}}  # noqa: RUF012

    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), _user_fk(), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    entity_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    registers: Mapped[dict[str, list[Any]]] = mapped_column(JSONB, nullable=False)


class SyncConflict(TenantOwned, Base):
    """A value that lost to a concurrent write: what the user can review and restore by hand."""

    __tablename__ = "sync_conflicts"
    __table_args__ = (
        Index("ix_sync_conflicts_user", "user_id", "id"),
        Index("ix_sync_conflicts_created", "created_at"),  # the retention sweep
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), _user_fk(), nullable=False)
    device_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))  # the syncing one
    entity_type: Mapped[str] = mapped_column(String(20), nullable=False)
    entity_id: Mapped[str] = mapped_column(String(100), nullable=False)
    field: Mapped[str] = mapped_column(String(40), nullable=False)
    lost_value: Mapped[Any] = mapped_column(JSONB)
    lost_hlc: Mapped[str] = mapped_column(String(40), nullable=False)
    lost_node: Mapped[str] = mapped_column(String(40), nullable=False)
    winner_hlc: Mapped[str] = mapped_column(String(40), nullable=False)
    winner_node: Mapped[str] = mapped_column(String(40), nullable=False)
    reason: Mapped[str] = mapped_column(String(40), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolution: Mapped[str | None] = mapped_column(String(20))  # "restored" or "dismissed"


class SyncBatch(TenantOwned, Base):
    """One batch: its inline changes until merged, then its result, so a repeated batch
    returns the same answer. Job messages carry only the (device, batch) ids."""

    __tablename__ = "sync_batches"

    device_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("sync_devices.id", ondelete="CASCADE"), primary_key=True
    )
    batch_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    changes: Mapped[list[Any] | None] = mapped_column(JSONB)  # cleared once merged
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
