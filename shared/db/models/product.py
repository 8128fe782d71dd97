"""The messaging product's own tables: the data that backup, device sync and export jobs move.

Every table carries `Timestamps`: `updated_at` is bumped on every UPDATE (by the ORM and by
the `conveyor_touch_updated_at` trigger, so raw SQL writers cannot forget) and rows are
soft-deleted through the `deleted_at` tombstone. Each table has a btree index
`(<owner column>, updated_at, <rest of the key>)` so "everything of user U changed since T,
tombstones included" is one index range scan that also supplies keyset-pagination order.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base, TenantOwned, Timestamps, new_uuid

CHANNEL_KINDS = ("direct", "group")
MEMBER_ROLES = ("owner", "admin", "member")
TASK_STATUSES = ("open", "done")

# Tables whose `updated_at` the database maintains with a BEFORE UPDATE trigger
# (created in migration 0002_product). Order: parents before children.
PRODUCT_TABLES = (
    "users",
    "channels",
    "channel_members",
    "messages",
    "contacts",
    "user_settings",
    "tasks",
    "decisions",
)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _user_fk(ondelete: str) -> ForeignKey:
    return ForeignKey("users.id", ondelete=ondelete)


class User(TenantOwned, Timestamps, Base):
    __tablename__ = "users"
    __table_args__ = (
        # Emails are stored normalised, so the partial unique index is also case-insensitive.
        CheckConstraint("email = lower(email)", name="email_lowercase"),
        Index(
            "uq_users_tenant_email_live",
            "tenant_id",
            "email",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_uuid)
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    display_name: Mapped[str] = mapped_column(String(200), nullable=False)
    locale: Mapped[str] = mapped_column(String(35), nullable=False)  # BCP 47, e.g. "pt-BR"
    timezone: Mapped[str] = mapped_column(String(64), nullable=False)  # IANA, e.g. "Europe/Oslo"


class Channel(TenantOwned, Timestamps, Base):
    __tablename__ = "channels"
    __table_args__ = (
        CheckConstraint(_one_of("kind", CHANNEL_KINDS), name="kind"),
        Index("ix_channels_owner_updated", "owner_id", "updated_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_uuid)
    # RESTRICT: purging a user who still owns channels must decide what happens to them first.
    owner_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), _user_fk("RESTRICT"), nullable=False
    )
    name: Mapped[str | None] = mapped_column(String(200))  # NULL for direct conversations
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    topic: Mapped[str | None] = mapped_column(Text)


class ChannelMember(TenantOwned, Timestamps, Base):
    """Membership; leaving a channel tombstones the row, re-joining clears `deleted_at`."""

    __tablename__ = "channel_members"
    __table_args__ = (
        CheckConstraint(_one_of("role", MEMBER_ROLES), name="role"),
        Index("ix_channel_members_user_updated", "user_id", "updated_at", "channel_id"),
    )

    channel_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), _user_fk("CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    joined_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class Message(TenantOwned, Timestamps, Base):
    __tablename__ = "messages"
    __table_args__ = (
        # Sync/backup of a channel's history; a user's view is channel_members -> this index.
        Index("ix_messages_channel_updated", "channel_id", "updated_at", "id"),
        # Per-user export/erasure ("everything U wrote") and the FK check when purging a user.
        Index("ix_messages_author_updated", "author_id", "updated_at", "id"),
        # FK check when purging a message; replies are a minority, so keep the index partial.
        Index(
            "ix_messages_reply_to",
            "reply_to_id",
            postgresql_where=text("reply_to_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_uuid)
    channel_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("channels.id", ondelete="CASCADE"), nullable=False
    )
    author_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), _user_fk("RESTRICT"), nullable=False
    )
    body: Mapped[str] = mapped_column(Text, nullable=False)
    reply_to_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("messages.id", ondelete="SET NULL")
    )
    edited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Contact(TenantOwned, Timestamps, Base):
    __tablename__ = "contacts"
    __table_args__ = (Index("ix_contacts_owner_updated", "owner_id", "updated_at", "id"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_uuid)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), _user_fk("CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(50))
    company: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[str | None] = mapped_column(Text)


class UserSetting(TenantOwned, Timestamps, Base):
    """One JSON value per (user, key); the key is the primary key, so upserts are natural."""

    __tablename__ = "user_settings"
    __table_args__ = (Index("ix_user_settings_user_updated", "user_id", "updated_at", "key"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), _user_fk("CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSONB, nullable=False)


class Task(TenantOwned, Timestamps, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(_one_of("status", TASK_STATUSES), name="status"),
        CheckConstraint(
            "(status = 'done') = (completed_at IS NOT NULL)", name="completed_at_matches_status"
        ),
        Index("ix_tasks_user_updated", "user_id", "updated_at", "id"),
        Index(
            "ix_tasks_source_message",
            "source_message_id",
            postgresql_where=text("source_message_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), _user_fk("CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(String(500), nullable=False)
    notes: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="open")
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    source_message_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("messages.id", ondelete="SET NULL")
    )


class Decision(TenantOwned, Timestamps, Base):
    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_user_updated", "user_id", "updated_at", "id"),
        Index(
            "ix_decisions_channel",
            "channel_id",
            postgresql_where=text("channel_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=new_uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), _user_fk("CASCADE"), nullable=False
    )
    channel_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("channels.id", ondelete="SET NULL")
    )
    title: Mapped[str] = mapped_column(String(500), nullable=False)
    outcome: Mapped[str] = mapped_column(Text, nullable=False)
    rationale: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
