"""Submits write many rows in one statement (shared/db/bulk.py) and answer without reading
the jobs back (issue #11): the answer must still be what the database holds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select

from shared.db.engine import session_scope
from shared.db.models import Job, OutboxMessage
from shared.db.repos import outbox as outbox_repo
from shared.jobs.submit import NewJob, submit_jobs
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_a_batch_answer_is_what_a_read_of_each_job_gives(stack: Stack) -> None:
    """Every field of a 202's jobs equals GET /v1/jobs/{id} (history aside): priorities by
    name, a delay turned into run_at, a normalized payload (5.0 → 5, defaults filled in), and
    created_at, which only the database knows.
    Mutation check: `new_job_out` with created_at = Python's clock → the answers differ."""
    user = f"bulk-{uuid.uuid4().hex[:8]}"
    run_at = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=123456)
    jobs = [
        {"kind": "diag.noop", "user_id": user},
        {"kind": "diag.noop", "user_id": user, "priority": "interactive", "delay_s": 3600},
        {
            "kind": "diag.noop",
            "user_id": user,
            "run_at": run_at.isoformat(),
            "payload": {"sleep_ms": 5.0},
        },
    ]
    response = stack.client.post("/v1/jobs:batch", json={"jobs": jobs}, headers=stack.headers())
    assert response.status_code == 202, response.text
    answered = response.json()["jobs"]
    assert [j["priority"] for j in answered] == ["normal", "interactive", "normal"]
    assert answered[2]["payload"]["sleep_ms"] == 5
    for job in answered:
        read = stack.client.get(f"/v1/jobs/{job['id']}", headers=stack.headers()).json()
        read.pop("events")
        assert {**job, "events": None} == {**read, "events": None}

    single = stack.client.post("/v1/jobs", json=jobs[1], headers=stack.headers()).json()
    read = stack.client.get(f"/v1/jobs/{single['id']}", headers=stack.headers()).json()
    assert {**single, "events": None} == {**read, "events": None}


def test_only_the_jobs_actually_inserted_are_created_and_published(stack: Stack) -> None:
    """A submit that names an existing job id among new ones: the existing job is answered as
    not created and gets no second outbox message; the new ones get one each.
    Mutation checks: `insert_jobs` taking every row as inserted → the existing id counted as
    created; its outbox insert without `WHERE r.job_id IN (SELECT id FROM inserted)` → the
    existing job published twice."""
    existing = uuid.uuid4()
    with session_scope(stack.sessions) as session:
        submit_jobs(session, [NewJob("diag.noop", "bulk", job_id=existing)])
    fresh = [uuid.uuid4(), uuid.uuid4()]
    with session_scope(stack.sessions) as session:
        outcomes = submit_jobs(
            session,
            [
                NewJob("diag.noop", "bulk", job_id=fresh[0]),
                NewJob("diag.noop", "bulk", job_id=existing),
                NewJob("diag.noop", "bulk", job_id=fresh[1]),
            ],
        )
    assert [(o.job_id, o.created) for o in outcomes] == [
        (fresh[0], True),
        (existing, False),
        (fresh[1], True),
    ]
    with session_scope(stack.sessions) as session:
        published = session.execute(
            select(OutboxMessage.job_id).where(OutboxMessage.job_id.in_([existing, *fresh]))
        ).scalars()
        counts = {job_id: 0 for job_id in [existing, *fresh]}
        for job_id in published:
            counts[job_id] += 1
        created = session.execute(select(Job.created_at).where(Job.id.in_(fresh))).scalars()
        assert {o.created_at for o in outcomes if o.created} == set(created)
    # This module's stack runs no relay: every message is still in the outbox.
    assert counts == {existing: 1, fresh[0]: 1, fresh[1]: 1}


def test_outbox_rows_keep_bytes_headers_and_due_times(stack: Stack) -> None:
    """Bodies are bytes (a dead letter's may be anything), headers JSON or null, and a row
    without publish_after is due at the database's now(), one with it at its own time."""
    body = bytes(range(256))
    later = datetime.now(UTC) + timedelta(days=1)
    marker = f"bulk.test.{uuid.uuid4().hex[:8]}"
    with session_scope(stack.sessions) as session:
        outbox_repo.add_many(
            session,
            [
                outbox_repo.outbox_row(exchange="x", routing_key=marker, body=body),
                outbox_repo.outbox_row(
                    exchange="x",
                    routing_key=marker,
                    body=b"{}",
                    headers={"x-reason": "a\u00e9\U0001f600"},
                    publish_after=later,
                ),
            ],
        )
    with session_scope(stack.sessions) as session:
        rows = (
            session.execute(
                select(OutboxMessage)
                .where(OutboxMessage.routing_key == marker)
                .order_by(OutboxMessage.id)
            )
            .scalars()
            .all()
        )
        assert [r.body for r in rows] == [body, b"{}"]
        assert [r.headers for r in rows] == [None, {"x-reason": "a\u00e9\U0001f600"}]
        assert rows[0].publish_after == rows[0].created_at
        assert rows[1].publish_after == later
        session.execute(delete(OutboxMessage).where(OutboxMessage.routing_key == marker))
