"""Retention: terminal jobs and their history leave after the retention period, in batches,
and the tables stay flat over repeated cycles."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import make_engine, make_session_factory, session_scope
from shared.jobs.retention import RUN_NAME, RetentionPolicy, purge_once
from shared.jobs.submit import NewJob, submit_jobs
from tests.support.pg_cluster import owned_cluster
from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
WEEK = 7 * 86400.0


def add_finished_jobs(
    sessions: sessionmaker[Session], n: int, *, kind: str, state: str, age: str
) -> None:
    """`n` jobs finished `age` ago (an SQL interval), each with three history rows."""
    with session_scope(sessions) as session:
        session.execute(
            text(
                """
                WITH made AS (
                    INSERT INTO jobs (id, kind, pool, user_id, state, priority, payload,
                                      attempt, max_attempts, run_at, progress,
                                      cancel_requested, source, finished_at)
                    SELECT gen_random_uuid(), :kind, 'default', 'retention-test', :state, 5,
                           '{"pad": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}', 1, 3,
                           now(), 1.0, false, 'api', now() - CAST(:age AS interval)
                    FROM generate_series(1, :n)
                    RETURNING id
                )
                INSERT INTO job_events (job_id, attempt, from_state, to_state)
                SELECT id, 1, s.f, s.t FROM made,
                    (VALUES (NULL, 'queued'), ('queued', 'running'), ('running', :state))
                        AS s(f, t)
                """
            ),
            {"n": n, "kind": kind, "state": state, "age": age},
        )


def count(sessions: sessionmaker[Session], sql: str) -> int:
    with session_scope(sessions) as session:
        return int(session.execute(text(sql)).scalar_one())


def test_expired_terminal_jobs_go_with_their_history_and_nothing_else_does(
    stack: Stack,
) -> None:
    add_finished_jobs(stack.sessions, 30, kind="diag.noop", state="succeeded", age="8 days")
    add_finished_jobs(stack.sessions, 20, kind="diag.noop", state="dead", age="8 days")
    add_finished_jobs(
        stack.sessions, 10, kind="diag.noop", state="failed", age="6 days"
    )  # too young
    add_finished_jobs(
        stack.sessions, 5, kind="oauth.refresh", state="succeeded", age="8 days"
    )  # kept
    with session_scope(stack.sessions) as session:
        [queued] = submit_jobs(session, [NewJob("diag.noop", "retention-test")])
        session.execute(
            text("UPDATE jobs SET created_at = now() - interval '30 days' WHERE id = :id"),
            {"id": queued.job_id},
        )
    policy = RetentionPolicy(WEEK, {"oauth.refresh": 30 * 86400})
    now = datetime.now(UTC)
    assert purge_once(stack.sessions, policy, now=now, batch=7) == 50  # several batches
    remaining = "SELECT count(*) FROM jobs WHERE user_id = 'retention-test'"
    assert count(stack.sessions, remaining) == 10 + 5 + 1
    orphans = (
        "SELECT count(*) FROM job_events e WHERE NOT EXISTS "
        "(SELECT 1 FROM jobs j WHERE j.id = e.job_id)"
    )
    assert count(stack.sessions, orphans) == 0
    assert stack.job(queued.job_id).state == "queued"  # never terminal: never purged
    runs = f"SELECT count(*) FROM periodic_runs WHERE name = '{RUN_NAME}'"
    assert count(stack.sessions, runs) == 1


def test_tables_stay_flat_over_repeated_retention_cycles(tmp_path: Path) -> None:
    """Five cycles of 3,000 expired jobs (+9,000 history rows): after each purge and plain
    VACUUMs (what autovacuum does), the space is reused, not added to. Two VACUUMs: index
    pages emptied by the first become reusable only at the next one, as over successive
    autovacuum runs. On a cluster of its own: another database's long transaction would
    hold back page recycling on a shared one."""
    with owned_cluster(tmp_path / "pg") as pg:
        engine = make_engine(pg.create_database(), pool_size=2)
        sessions = make_session_factory(engine)
        size_sql = "SELECT pg_total_relation_size('jobs') + pg_total_relation_size('job_events')"
        sizes = []
        try:
            for _ in range(5):
                add_finished_jobs(sessions, 3000, kind="diag.noop", state="succeeded", age="8 days")
                assert purge_once(sessions, RetentionPolicy(WEEK), now=datetime.now(UTC)) == 3000
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.execute(text("VACUUM jobs, job_events"))
                    conn.execute(text("VACUUM jobs, job_events"))
                sizes.append(count(sessions, size_sql))
            assert count(sessions, "SELECT count(*) FROM jobs") == 0
        finally:
            engine.dispose()
    # Without the purge the five cycles would hold 5x the rows; with it the last size is
    # within 25% of the first.
    assert sizes[-1] <= sizes[0] * 1.25, sizes


def test_the_scheduler_purges_finished_jobs_after_the_retention(stack: Stack) -> None:
    stack.start_scheduler(CONVEYOR_JOB_RETENTION_S="2", CONVEYOR_JOB_RETENTION_INTERVAL_S="0.5")
    stack.start_worker("default", processes=1, threads=2)
    job = stack.submit()
    assert stack.wait_state(job["id"], timeout=60).state == "succeeded"
    # Readable until the retention passes, then gone with its history.
    wait_for(lambda: stack.find_job(job["id"]) is None, timeout=120, what="the job purged")
    assert stack.events(job["id"]) == []


def test_an_idempotency_key_is_free_again_after_its_job_was_purged(stack: Stack) -> None:
    for process in list(stack.processes):  # no worker may run the job meanwhile
        stack.kill(process)
    headers = {**stack.headers(), "Idempotency-Key": "retention-key"}
    body = {"kind": "diag.noop", "user_id": "retention-test", "payload": {}}
    first = stack.client.post("/v1/jobs", json=body, headers=headers)
    assert first.status_code == 202
    repeat = stack.client.post("/v1/jobs", json=body, headers=headers)
    assert (repeat.status_code, repeat.json()["id"]) == (200, first.json()["id"])
    with session_scope(stack.sessions) as session:
        session.execute(
            text(
                "UPDATE jobs SET state = 'succeeded', finished_at = now() - interval '8 days'"
                " WHERE id = :id"
            ),
            {"id": first.json()["id"]},
        )
    purge_once(stack.sessions, RetentionPolicy(WEEK), now=datetime.now(UTC))
    again = stack.client.post("/v1/jobs", json=body, headers=headers)
    assert again.status_code == 202
    assert again.json()["id"] != first.json()["id"]
