"""The claim and success statements look their jobs up by id, whatever the table's size.

Both read their batch from a JSON parameter (`jsonb_to_recordset`), which the planner
assumes yields 100 rows. Joined to `jobs` alone, that made PostgreSQL hash the whole table
(seq scan) or every running job for each batch of one to four jobs: half of all CPU during a
drain (stop 21's profile). psycopg prepares the statements, so a generic plan chosen once is
kept for the connection's life. These tests run the generic plans on a table of 20,000 jobs,
with and without statistics, and count the buffers each statement touches.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from shared.db.repos import job_transitions as transitions
from shared.db.tenancy import DEFAULT_TENANT
from tests.support.services import create_database, drop_database

pytestmark = pytest.mark.integration

JOBS = 20_000
BATCH = 4
# Four jobs through the primary key and their index updates touch ~60 buffers; a scan of the
# table or of the running jobs touched 450 here.
MAX_BUFFERS = 150

FILL = """
INSERT INTO jobs (id, tenant_id, kind, pool, user_id, state, priority, payload, attempt,
                  max_attempts, run_at, source, progress, cancel_requested, created_at,
                  updated_at, started_at, heartbeat_at, worker, finished_at)
SELECT gen_random_uuid(), %(tenant)s, 'diag.noop', 'default', 'u', s.state, 0, '{}',
       CASE WHEN s.state = 'queued' THEN 0 ELSE 1 END, 3, now(), 'api', 0, false, now(),
       now(), CASE WHEN s.state = 'queued' THEN NULL ELSE now() END,
       CASE WHEN s.state = 'running' THEN now() END,
       CASE WHEN s.state = 'running' THEN 'w1' END,
       CASE WHEN s.state = 'succeeded' THEN now() END
FROM generate_series(1, %(n)s) AS g,
     LATERAL (SELECT CASE WHEN g %% 10 = 0 THEN 'queued' WHEN g %% 10 = 1 THEN 'running'
                          ELSE 'succeeded' END AS state) AS s
"""


@pytest.fixture(scope="module")
def filled_db() -> Iterator[str]:
    url = create_database("conveyor_plans")
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(FILL, {"tenant": DEFAULT_TENANT, "n": JOBS})
    try:
        yield conninfo
    finally:
        drop_database(url)


def explain_generic(conninfo: str, sql: str, params: dict[str, Any], *, analyzed: bool) -> str:
    """EXPLAIN ANALYZE the generic plan (the one a prepared statement keeps), rolled back."""
    with psycopg.connect(conninfo) as conn:
        if analyzed:
            conn.execute("ANALYZE jobs")
        else:
            # As a table autovacuum has not reached yet: never analyzed (rolled back below).
            conn.execute("DELETE FROM pg_statistic WHERE starelid = 'jobs'::regclass")
            conn.execute(
                "UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = 'jobs'::regclass"
            )
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        rows = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params, prepare=True
        ).fetchall()
        conn.rollback()
    return "\n".join(row[0] for row in rows)


def top_buffers(plan: str) -> int:
    """Shared buffers the whole statement touched (the plan's first Buffers line)."""
    match = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", plan)
    assert match, plan
    return int(match.group(1)) + int(match.group(2) or 0)


def jobs_in(conninfo: str, state: str) -> list[uuid.UUID]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT id FROM jobs WHERE state = %s ORDER BY id LIMIT %s", (state, BATCH)
        ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize("analyzed", [False, True], ids=["no-statistics", "analyzed"])
def test_a_claim_reads_only_its_own_jobs(filled_db: str, analyzed: bool) -> None:
    deliveries = [
        transitions.Delivery(job_id, "diag.noop", DEFAULT_TENANT)
        for job_id in jobs_in(filled_db, "queued")
    ]
    params = transitions.claim_params(deliveries, worker="w2", stale_s=30.0)

    plan = explain_generic(filled_db, transitions.CLAIM_SQL, params, analyzed=analyzed)

    assert re.match(rf"CTE Scan on claimed \(actual time=\S+ rows={BATCH} loops=1\)", plan), plan
    assert "Seq Scan on jobs" not in plan, plan
    assert top_buffers(plan) < MAX_BUFFERS, plan


@pytest.mark.parametrize("analyzed", [False, True], ids=["no-statistics", "analyzed"])
def test_a_success_reads_only_its_own_jobs(filled_db: str, analyzed: bool) -> None:
    successes = [
        transitions.Success(job_id, 1, "{}", "diag.noop.succeeded", b"{}")
        for job_id in jobs_in(filled_db, "running")
    ]
    params = transitions.succeed_params(successes, exchange="conveyor.events")

    plan = explain_generic(filled_db, transitions.SUCCEED_SQL, params, analyzed=analyzed)

    assert re.match(rf"CTE Scan on done \(actual time=\S+ rows={BATCH} loops=1\)", plan), plan
    assert "Seq Scan on jobs" not in plan, plan
    assert top_buffers(plan) < MAX_BUFFERS, plan
