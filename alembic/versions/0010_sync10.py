"""device sync, part 2: messages and channels sync; conflict-log pruning index

Revision ID: 0010_sync10
Revises: 0010_tenancy12
Create Date: 2026-11-30 18:50:00

Users whose sync settings still hold the four original types (the default) get the two new
ones, `channel` and `message`; users who chose a subset keep their choice. The conflict log
gets an index on `created_at` for the scheduler's retention sweep, and a resolution
(`resolved_at`, `resolution`: "restored" or "dismissed").
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_sync10"
down_revision: str | None = "0010_tenancy12"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "ARRAY['contact','task','decision','setting']::varchar(20)[]"
NEW = "ARRAY['channel','message']::varchar(20)[]"


def upgrade() -> None:
    op.execute(f"UPDATE sync_settings SET types = types || {NEW} WHERE types @> {OLD}")
    op.create_index("ix_sync_conflicts_created", "sync_conflicts", ["created_at"])
    op.add_column("sync_conflicts", sa.Column("resolved_at", sa.DateTime(timezone=True)))
    op.add_column("sync_conflicts", sa.Column("resolution", sa.String(length=20)))


def downgrade() -> None:
    op.drop_column("sync_conflicts", "resolution")
    op.drop_column("sync_conflicts", "resolved_at")
    op.drop_index("ix_sync_conflicts_created", table_name="sync_conflicts")
    op.execute(
        "UPDATE sync_settings SET types = array_remove(array_remove(types, 'channel'), 'message')"
    )
