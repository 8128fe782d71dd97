"""Downgrading the hot-path migration gives older code every job's history, in order."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine, pool, text

from shared.db.migrations import alembic_config
from tests.support.services import create_database, drop_database

pytestmark = pytest.mark.integration

HISTORY = (
    "SELECT attempt, from_state, to_state, reason FROM job_history WHERE job_id = :j"
    " ORDER BY phase, seq"
)
STORED = (
    "SELECT attempt, from_state, to_state, reason FROM job_events WHERE job_id = :j ORDER BY id"
)


def test_downgrading_stores_each_jobs_history_in_the_order_it_happened() -> None:
    """A job retried once then succeeded: its first claim and retry are stored rows, its
    submit, second claim and success are implied by the row. Code before the migration reads
    `job_events` ordered by id. Broken on purpose once (the implied rows appended after the
    stored ones, as the first downgrade did): the submit came after the retry."""
    url = create_database("conveyor_test_hotpath")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.begin() as conn:
            job = conn.execute(
                text(
                    "INSERT INTO jobs (id, tenant_id, kind, pool, user_id, state, priority,"
                    " payload, attempt, max_attempts, run_at, progress, cancel_requested, source,"
                    " created_at, started_at, finished_at)"
                    " VALUES (gen_random_uuid(), 'default', 'diag.noop', 'default', 'u',"
                    " 'succeeded', 5, '{}', 2, 3, now() - interval '4 s', 1, false, 'api',"
                    " now() - interval '4 s', now() - interval '2 s', now() - interval '1 s')"
                    " RETURNING id"
                )
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO job_events (job_id, at, attempt, from_state, to_state, reason)"
                    " VALUES (:j, now() - interval '3.5 s', 1, 'queued', 'running', NULL),"
                    "        (:j, now() - interval '3 s', 1, 'running', 'queued', 'retry')"
                ),
                {"j": job},
            )
            before = [tuple(r) for r in conn.execute(text(HISTORY), {"j": job})]
        assert before == [
            (0, None, "queued", None),
            (1, "queued", "running", None),
            (1, "running", "queued", "retry"),
            (2, "queued", "running", None),
            (2, "running", "succeeded", None),
        ]
        command.downgrade(alembic_config(url), "0010_sync10")
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(text(STORED), {"j": job})] == before
    finally:
        engine.dispose()
        drop_database(url)
