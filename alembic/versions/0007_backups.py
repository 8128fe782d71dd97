"""backups and backup_settings (issue #8)

Revision ID: 0007_backups
Revises: 0006_newcomer
Create Date: 2026-11-30 15:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_backups"
down_revision: str | None = "0006_newcomer"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("api_key_id", sa.UUID(), nullable=True),
        sa.Column("requested_type", sa.String(length=20), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("data_types", postgresql.ARRAY(sa.String(length=50)), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("parent_id", sa.UUID(), nullable=True),
        sa.Column("job_id", sa.UUID(), nullable=True),
        sa.Column("restore_job_ids", postgresql.ARRAY(sa.UUID()), nullable=False),
        sa.Column("object_key", sa.String(length=1024), nullable=True),
        sa.Column("manifest_key", sa.String(length=1024), nullable=True),
        sa.Column("key_id", sa.String(length=50), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("high_water_mark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("row_counts", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("plain_bytes", sa.BigInteger(), nullable=True),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=True),
        sa.Column("manifest_digest", sa.String(length=64), nullable=True),
        sa.Column("manifest", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("scheduled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("type IN ('full', 'incremental')", name=op.f("ck_backups_type")),
        sa.CheckConstraint("status IN ('pending', 'completed')", name=op.f("ck_backups_status")),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["backups.id"],
            name=op.f("fk_backups_parent_id_backups"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backups")),
    )
    op.create_index("ix_backups_user_created", "backups", ["user_id", "created_at"])
    op.create_index("ix_backups_parent_id", "backups", ["parent_id"])
    op.create_table(
        "backup_settings",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("api_key_id", sa.UUID(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("interval_s", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("data_types", postgresql.ARRAY(sa.String(length=50)), nullable=False),
        sa.Column("full_every", sa.Integer(), nullable=False),
        sa.Column("keep_last", sa.Integer(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint("type IN ('full', 'incremental')", name=op.f("ck_backup_settings_type")),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_backup_settings")),
    )
    op.create_index(
        "ix_backup_settings_due",
        "backup_settings",
        ["next_run_at"],
        postgresql_where=sa.text("enabled"),
    )


def downgrade() -> None:
    op.drop_table("backup_settings")
    op.drop_table("backups")
