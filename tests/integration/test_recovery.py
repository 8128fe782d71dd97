"""Failures of the moving parts: killed workers, dropped connections, a vanished scheduler."""

from __future__ import annotations

import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from shared.db.engine import session_scope
from shared.db.models import Job, OutboxMessage
from shared.db.repos import outbox as outbox_repo
from shared.jobs.submit import NewJob, submit_jobs
from tests.support.services import rabbitmqctl, wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def test_sigkilled_worker_job_is_redelivered_and_succeeds_exactly_once(stack: Stack) -> None:
    scheduler = stack.start_scheduler()
    first = stack.start_worker("default", processes=1, threads=2)
    job = stack.submit(payload={"sleep_ms": 4000})
    stack.wait_state(job["id"], "running", timeout=30)
    time.sleep(0.3)

    stack.kill(first, signal.SIGKILL)  # no ack, no state write: the message comes back
    stack.start_worker("default", processes=1, threads=2)

    done = stack.wait_state(job["id"], timeout=40)
    assert done.state == "succeeded"
    assert done.attempt == 2
    succeeded = [e for e in stack.events(job["id"]) if e[2] == "succeeded"]
    assert succeeded == [(2, "running", "succeeded", None)]
    stack.kill(scheduler)


def test_connection_loss_loses_no_job(stack: Stack) -> None:
    stack.start_scheduler()
    stack.start_worker("default", processes=1, threads=8)
    with session_scope(stack.sessions) as session:
        ids = [
            s.job_id
            for s in submit_jobs(
                session, [NewJob("diag.noop", f"u{i}", {"sleep_ms": 20}) for i in range(300)]
            )
        ]

    wait_for(lambda: sum(stack.job(i).state == "succeeded" for i in ids[:30]) >= 10, timeout=30)
    rabbitmqctl("close_all_connections", "-p", stack.vhost, "test: connection loss")

    for job_id in ids:
        assert stack.wait_state(job_id, timeout=90).state == "succeeded"
    # Each job ran to success once (a lost ack may rerun an attempt, never a success).
    for job_id in ids[:50]:
        assert [e[2] for e in stack.events(job_id)].count("succeeded") == 1


def test_reaper_requeues_a_job_whose_worker_vanished_without_redelivery(stack: Stack) -> None:
    """A job left 'running' with a stale heartbeat and no message in flight."""
    job_id = uuid.uuid4()
    with session_scope(stack.sessions) as session:
        submit_jobs(
            session,
            [NewJob("diag.noop", "u", job_id=job_id, run_at=datetime.now(UTC) + timedelta(days=1))],
        )
    with session_scope(stack.sessions) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                state="running",
                attempt=1,
                run_at=datetime.now(UTC),
                heartbeat_at=datetime.now(UTC) - timedelta(minutes=10),
            )
        )
    stack.start_scheduler(CONVEYOR_HEARTBEAT_STALE_S="5")
    stack.start_worker("default", processes=1, threads=2)

    done = stack.wait_state(job_id, "succeeded", timeout=40)
    assert done.attempt == 2
    assert (1, "running", "queued", "worker_lost") in stack.events(job_id)


def test_jobs_committed_while_no_scheduler_runs_are_published_later(stack: Stack) -> None:
    stack.stop_schedulers()
    with session_scope(stack.sessions) as session:
        new = [NewJob("diag.noop", f"u{i}") for i in range(20)]
        ids = [s.job_id for s in submit_jobs(session, new)]
    time.sleep(1)
    assert all(stack.job(i).state == "queued" for i in ids)
    with session_scope(stack.sessions) as session:
        assert outbox_repo.pending_count(session) >= 20

    stack.start_scheduler()
    for job_id in ids:
        assert stack.wait_state(job_id).state == "succeeded"


def test_rolled_back_submission_publishes_nothing(stack: Stack) -> None:
    job_id = uuid.uuid4()
    with pytest.raises(RuntimeError), session_scope(stack.sessions) as session:
        submit_jobs(session, [NewJob("diag.noop", "u", job_id=job_id)])
        raise RuntimeError("the caller's transaction fails after staging the job")
    time.sleep(1.5)
    assert stack.find_job(job_id) is None
    with session_scope(stack.sessions) as session:
        bodies = session.execute(select(OutboxMessage.body)).scalars()
        assert not [b for b in bodies if str(job_id).encode() in b]


def test_queued_job_whose_message_was_lost_is_published_again(stack: Stack) -> None:
    """E.g. its message was published and then lost. Negative control: a job of the same age
    whose message is still waiting in the outbox is left to the relay, not republished."""
    lost, waiting = uuid.uuid4(), uuid.uuid4()
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    with session_scope(stack.sessions) as session:
        submit_jobs(
            session,
            [
                NewJob("diag.noop", "u", job_id=lost, run_at=tomorrow),
                NewJob("diag.noop", "u", job_id=waiting, run_at=tomorrow),
            ],
        )
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    with session_scope(stack.sessions) as session:
        session.execute(
            update(Job)
            .where(Job.id.in_([lost, waiting]))
            .values(run_at=long_ago, updated_at=long_ago)
        )
        # The lost job's message went out (and vanished); the other one's never left.
        session.execute(
            update(OutboxMessage).where(OutboxMessage.job_id == lost).values(sent_at=long_ago)
        )
    stack.stop_schedulers()
    stack.start_scheduler(CONVEYOR_REPUBLISH_QUEUED_AFTER_S="60")
    stack.start_worker("default", processes=1, threads=2)
    done = stack.wait_state(lost, timeout=40)
    assert done.state == "succeeded"
    assert done.attempt == 1
    # The sweep has run (it republished `lost`); `waiting` still waits for its own row.
    assert stack.job(waiting).state == "queued"
    with session_scope(stack.sessions) as session:
        rows = session.execute(
            select(OutboxMessage.sent_at).where(OutboxMessage.job_id == waiting)
        ).all()
    assert [r.sent_at for r in rows] == [None]
