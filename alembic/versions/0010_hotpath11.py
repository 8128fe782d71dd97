"""hot path: happy-path history on the job row; `job_history` view

Revision ID: 0010_hotpath11
Revises: 0010_sync10
Create Date: 2026-11-30 18:45:00

Submit, claim and succeed no longer write `job_events` rows: the job row's `created_at`,
`started_at` (+ `attempt`) and `finished_at` carry them. `job_events` keeps the other
transitions (retry, fail, take_over, cancel, kill, replay, reject, adopt) and, when an attempt
leaves `running` any other way than by succeeding, that attempt's claim (written then, with
its `started_at`). The view `job_history` is the full history: stored rows plus the ones the
row implies, ordered by (`phase`, `seq`) within a job. Existing rows keep their stored
history and get nothing synthesized twice (each synthesized row is skipped when stored).
`security_invoker`: row-level security on `jobs`/`job_events` (tenancy, #12) applies to
readers of the view as to readers of the tables.

Also: the idempotency key's unique index covers only rows that have a key. Every non-HOT
update of a job writes an entry into every index whose predicate holds, so jobs without a key
(most; all internal ones) no longer write three all-NULL entries over their life. On a large
table, build the index CONCURRENTLY by hand before deploying (this takes a write lock).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010_hotpath11"
down_revision: str | None = "0010_sync10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JOB_HISTORY = """
CREATE VIEW job_history WITH (security_invoker = true) AS
SELECT e.job_id, e.at, e.attempt, e.from_state, e.to_state, e.reason, e.message,
       1 AS phase, e.id AS seq
FROM job_events AS e
UNION ALL
-- submit: the row itself, unless its first transition is stored (adopt, reject, legacy rows)
SELECT j.id, j.created_at, 0, NULL, 'queued', NULL, NULL, 0, 0
FROM jobs AS j
WHERE NOT EXISTS (SELECT FROM job_events AS e WHERE e.job_id = j.id AND e.from_state IS NULL)
UNION ALL
-- the claim of the current attempt while it runs or after it succeeded
SELECT j.id, j.started_at, j.attempt, 'queued', 'running', NULL, NULL, 2, 0
FROM jobs AS j
WHERE j.state IN ('running', 'succeeded') AND j.attempt > 0 AND j.started_at IS NOT NULL
  AND NOT EXISTS (
    SELECT FROM job_events AS e
    WHERE e.job_id = j.id AND e.attempt = j.attempt AND e.to_state = 'running')
UNION ALL
-- succeed
SELECT j.id, j.finished_at, j.attempt, 'running', 'succeeded', NULL, NULL, 3, 0
FROM jobs AS j
WHERE j.state = 'succeeded' AND j.finished_at IS NOT NULL AND NOT EXISTS (
    SELECT FROM job_events AS e
    WHERE e.job_id = j.id AND e.attempt = j.attempt AND e.to_state = 'succeeded')
"""


def upgrade() -> None:
    op.execute(JOB_HISTORY)
    op.drop_constraint("uq_jobs_idempotency", "jobs", type_="unique")
    op.create_index(
        "uq_jobs_idempotency",
        "jobs",
        ["api_key_id", "idempotency_key"],
        unique=True,
        postgresql_where="idempotency_key IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_index("uq_jobs_idempotency", table_name="jobs")
    op.create_unique_constraint("uq_jobs_idempotency", "jobs", ["api_key_id", "idempotency_key"])
    # The history the rows imply becomes stored rows again, so older code sees all of it.
    # Older code orders a job's events by id: every job's history is rewritten in the view's
    # order (synthesized rows merely appended would put a retried job's submit after its retry).
    op.execute(
        """
        CREATE TEMP TABLE history_rows ON COMMIT DROP AS
        SELECT job_id, at, attempt, from_state, to_state, reason, message, phase, seq
        FROM job_history
        """
    )
    op.execute("DELETE FROM job_events")
    op.execute(
        """
        INSERT INTO job_events (job_id, at, attempt, from_state, to_state, reason, message)
        SELECT job_id, at, attempt, from_state, to_state, reason, message FROM history_rows
        ORDER BY job_id, phase, seq
        """
    )
    op.execute("DROP VIEW job_history")
