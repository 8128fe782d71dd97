"""analytics exports and export schedules (issue #9)

Revision ID: 0008_exports
Revises: 0007_backups
Create Date: 2026-11-30 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008_exports"
down_revision: str | None = "0007_backups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def _api_key_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["api_key_id"],
        ["api_keys.id"],
        name=op.f(f"fk_{table}_api_key_id_api_keys"),
        ondelete="SET NULL",
    )


def upgrade() -> None:
    op.create_table(
        "export_schedules",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("api_key_id", sa.UUID(), nullable=True),
        sa.Column("cron", sa.String(length=100), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("request", postgresql.JSONB(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        _api_key_fk("export_schedules"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_schedules")),
    )
    op.create_index(
        "ix_export_schedules_due",
        "export_schedules",
        ["next_run_at"],
        postgresql_where=sa.text("enabled"),
    )
    op.create_index("ix_export_schedules_user", "export_schedules", ["user_id"])
    op.create_table(
        "exports",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("api_key_id", sa.UUID(), nullable=True),
        sa.Column("schedule_id", sa.UUID(), nullable=True),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("request", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("bucket", sa.String(length=200), nullable=True),
        sa.Column("key", sa.String(length=500), nullable=True),
        sa.Column("filename", sa.String(length=300), nullable=True),
        sa.Column("content_type", sa.String(length=200), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("row_count", sa.BigInteger(), nullable=True),
        sa.Column("range_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("range_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'ready', 'expired', 'deleted')", name=op.f("ck_exports_status")
        ),
        _api_key_fk("exports"),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["export_schedules.id"],
            name=op.f("fk_exports_schedule_id_export_schedules"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exports")),
    )
    op.create_index("ix_exports_user_created", "exports", ["user_id", "created_at"])
    op.create_index(
        "ix_exports_ready_expires",
        "exports",
        ["expires_at"],
        postgresql_where=sa.text("status = 'ready'"),
    )


def downgrade() -> None:
    op.drop_index("ix_exports_ready_expires", table_name="exports")
    op.drop_index("ix_exports_user_created", table_name="exports")
    op.drop_table("exports")
    op.drop_index("ix_export_schedules_user", table_name="export_schedules")
    op.drop_index("ix_export_schedules_due", table_name="export_schedules")
    op.drop_table("export_schedules")
