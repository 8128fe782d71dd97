"""jobs.request_hash: what an idempotency key was first used for

Revision ID: 0006_newcomer
Revises: 0006_reliability
Create Date: 2026-11-30 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_newcomer"
down_revision: str | None = "0006_reliability"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing; old rows never report a mismatch.
    op.add_column("jobs", sa.Column("request_hash", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "request_hash")
