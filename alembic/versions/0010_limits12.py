"""limits: per-key rate-limit overrides and the shared token buckets

Revision ID: 0010_limits12
Revises: 0010_keys12
Create Date: 2026-11-30 18:50:00

`api_keys.rate_limit_per_s` / `rate_limit_burst` override the configured defaults for one
key (NULL: the defaults). `rate_limit_buckets` holds one row per key that has made a request:
its GCRA "theoretical arrival time", so every ingress replica shares one bucket per key.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_limits12"
down_revision: str | None = "0010_keys12"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("rate_limit_per_s", sa.Float(), nullable=True))
    op.add_column("api_keys", sa.Column("rate_limit_burst", sa.Integer(), nullable=True))
    op.create_table(
        "rate_limit_buckets",
        sa.Column("api_key_id", sa.UUID(), nullable=False),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("api_key_id"),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_buckets")
    op.drop_column("api_keys", "rate_limit_burst")
    op.drop_column("api_keys", "rate_limit_per_s")
