"""uploads, files and per-user storage totals (issue #3)

Revision ID: 0004_files
Revises: 0003_periodic
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_files"
down_revision: str | None = "0003_periodic"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now(name: str) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("api_key_id", sa.UUID(), nullable=True),
        sa.Column("filename", sa.String(length=1024), nullable=False),
        sa.Column("declared_type", sa.String(length=255), nullable=False),
        sa.Column("declared_size", sa.BigInteger(), nullable=False),
        sa.Column("incoming_key", sa.String(length=1024), nullable=False),
        sa.Column("job_id", sa.UUID(), nullable=True),
        _now("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
    )
    op.create_index(op.f("ix_uploads_user_id"), "uploads", ["user_id"])
    op.create_table(
        "files",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("api_key_id", sa.UUID(), nullable=True),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("thumbnails", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        _now("created_at"),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
    )
    op.create_index("ix_files_user_id_created_at", "files", ["user_id", "created_at"])
    op.create_table(
        "user_storage",
        sa.Column("user_id", sa.String(length=200), nullable=False),
        sa.Column("bytes_used", sa.BigInteger(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        _now("updated_at"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_user_storage")),
    )


def downgrade() -> None:
    op.drop_table("user_storage")
    op.drop_index("ix_files_user_id_created_at", table_name="files")
    op.drop_table("files")
    op.drop_index(op.f("ix_uploads_user_id"), table_name="uploads")
    op.drop_table("uploads")
