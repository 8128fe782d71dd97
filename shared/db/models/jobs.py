"""Job state (the source of truth), its transition log, the outbox, tenants and API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.base import Base, TenantOwned

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "dead")
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "dead"})


class Tenant(Base):
    """An isolated customer: its keys, users and every row they own (see docs/security.md)."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        Text, ForeignKey("tenants.id"), nullable=False, server_default="default"
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    prefix: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32), nullable=False)
    is_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # shared/scopes.py: "write" (the default), "read", "submit:<kind>"...; admin is is_admin.
    scopes: Mapped[list[str]] = mapped_column(
        ARRAY(String(120)), nullable=False, default=lambda: ["write"], server_default="{write}"
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # `apikey rotate`: the secret it replaced keeps working until previous_valid_until.
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    previous_secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32))
    previous_valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Per-key overrides of CONVEYOR_RATE_LIMIT_PER_S / _BURST; NULL: the configured default.
    rate_limit_per_s: Mapped[float | None] = mapped_column(Float)
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer)


class RateLimitBucket(Base):
    """One GCRA bucket per API key, shared by every ingress replica (docs/api.md#limits)."""

    __tablename__ = "rate_limit_buckets"

    api_key_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    # The "theoretical arrival time": the bucket is full again at tat; a request is admitted
    # while tat + one interval - now <= burst x interval.
    tat: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Job(TenantOwned, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"state IN {JOB_STATES!r}", name="state"),
        # Partial: keyless jobs (most) write no entries here on insert and non-HOT updates.
        Index(
            "uq_jobs_idempotency",
            "api_key_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index("ix_jobs_state_kind", "state", "kind"),
        Index("ix_jobs_tenant_user_created", "tenant_id", "user_id", "created_at"),
        Index("ix_jobs_created_id", "created_at", "id"),
        # The retention purge: terminal jobs, oldest first.
        Index("ix_jobs_finished", "finished_at", postgresql_where=text("finished_at IS NOT NULL")),
        Index(
            "ix_jobs_running_heartbeat",
            "heartbeat_at",
            postgresql_where=text("state = 'running'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    kind: Mapped[str] = mapped_column(String(100), nullable=False)
    pool: Mapped[str] = mapped_column(String(50), nullable=False)
    user_id: Mapped[str] = mapped_column(String(200), nullable=False)
    state: Mapped[str] = mapped_column(String(20), nullable=False)
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    progress: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    progress_message: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    source: Mapped[str] = mapped_column(String(20), nullable=False)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_keys.id", ondelete="SET NULL")
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # SHA-256 of the submitted request, so a reused idempotency key with another body is refused.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class JobEvent(Base):
    """One row per state transition: when, which attempt, why."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job", "job_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    )
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.clock_timestamp(), nullable=False
    )
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20), nullable=False)
    reason: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str | None] = mapped_column(Text)


class OutboxMessage(Base):
    """A message to publish, written in the same transaction as the state it announces."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_pending",
            "publish_after",
            "id",
            postgresql_where=text("sent_at IS NULL"),
        ),
        Index(
            "ix_outbox_pending_job",
            "job_id",
            postgresql_where=text("sent_at IS NULL AND job_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # The job a job message publishes (None for events and dead letters): the republish
    # sweep leaves alone jobs whose message is still waiting here.
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    exchange: Mapped[str] = mapped_column(String(200), nullable=False)
    routing_key: Mapped[str] = mapped_column(String(255), nullable=False)
    body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False, default=0)
    publish_after: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PeriodicRun(Base):
    """When each periodic job last ran: the schedule survives scheduler fail-over."""

    __tablename__ = "periodic_runs"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
