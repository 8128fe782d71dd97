"""outbox rows name the job they publish; finished jobs are found by age for retention

The republish sweep skips a queued job whose message is still waiting in the outbox (the
relay will send it), so it never doubles a backlog that is merely slow to publish. The
retention purge walks terminal jobs oldest first through a partial index on finished_at.

Revision ID: 0006_reliability
Revises: 0005_oauth
Create Date: 2026-11-30 15:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_reliability"
down_revision: str | None = "0005_oauth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("job_id", sa.UUID(), nullable=True))
    op.create_index(
        "ix_outbox_pending_job",
        "outbox",
        ["job_id"],
        postgresql_where=sa.text("sent_at IS NULL AND job_id IS NOT NULL"),
    )

    op.create_index(
        "ix_jobs_finished",
        "jobs",
        ["finished_at"],
        postgresql_where=sa.text("finished_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_finished", table_name="jobs")
    op.drop_index("ix_outbox_pending_job", table_name="outbox")
    op.drop_column("outbox", "job_id")
