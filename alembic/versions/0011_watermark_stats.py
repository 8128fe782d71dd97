"""watermark: the tenant role may read other sessions' transaction starts

Revision ID: 0011_watermark_stats
Revises: 0010_hotpath11

`safe_watermark` (shared/db/repos/changes.py) takes the start of the oldest open transaction
from `pg_stat_activity`. Inside a tenant-scoped transaction the current role is
`conveyor_app`, which sees `xact_start` only for its own sessions: every concurrent sync or
backup looked idle, the watermark came out as now(), and a concurrent writer's rows (stamped
with its earlier start) were skipped by the next delta. `pg_read_all_stats` shows them.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011_watermark_stats"
down_revision: str | None = "0010_hotpath11"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APP_ROLE = "conveyor_app"  # = shared.db.tenancy.APP_ROLE (migrations do not import app code)


def upgrade() -> None:
    op.execute(f"GRANT pg_read_all_stats TO {APP_ROLE}")


def downgrade() -> None:
    op.execute(f"REVOKE pg_read_all_stats FROM {APP_ROLE}")
