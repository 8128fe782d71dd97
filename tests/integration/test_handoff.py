"""The submit hand-off (shared/messaging/handoff.py): the submitting process publishes its
jobs' messages after its commit; the relay publishes what a failed hand-off left, once due.

Each docstring names the deliberate mutation of the code that made the test fail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from shared.db.engine import libpq_dsn, session_scope
from shared.db.models import Job, OutboxMessage
from shared.jobs.submit import NewJob, submit_jobs
from shared.messaging.handoff import Handoff
from shared.messaging.names import JOBS_EXCHANGE
from shared.messaging.publisher import AmqpPublisher
from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

GRACE_S = 600.0  # the relay never gets a handed-off row within a test


@pytest.fixture
def handoff(stack: Stack) -> Iterator[Handoff]:
    publisher = AmqpPublisher(stack.amqp_url)
    handing_off = Handoff(publisher, libpq_dsn(stack.db_url), grace_s=GRACE_S)
    yield handing_off
    handing_off.close()
    publisher.close()


def job_messages(stack: Stack, job_id: uuid.UUID) -> int:
    """The job's own message rows in the outbox (not its completion events)."""
    with session_scope(stack.sessions) as session:
        stmt = select(func.count()).where(
            OutboxMessage.job_id == job_id, OutboxMessage.exchange == JOBS_EXCHANGE
        )
        return int(session.execute(stmt).scalar_one())


def test_a_handed_off_job_runs_without_the_relay_and_its_row_goes(
    stack: Stack, handoff: Handoff
) -> None:
    """No scheduler runs: the job is published by the hand-off alone, runs, and its outbox
    row is deleted once RabbitMQ confirmed it.

    Mutation checks: `_after_commit` publishing nothing → the job stayed queued; the
    confirm callback not queuing the delete → the row stayed."""
    stack.stop_schedulers()
    stack.start_worker("default", processes=1, threads=2)
    with session_scope(stack.sessions) as session:
        [outcome] = submit_jobs(session, [NewJob("diag.noop", "u")], handoff=handoff)
    assert stack.wait_state(outcome.job_id, timeout=60).state == "succeeded"
    wait_for(lambda: job_messages(stack, outcome.job_id) == 0, timeout=30, what="row deleted")


def test_a_failed_handoff_leaves_the_message_to_the_relay_once_due(stack: Stack) -> None:
    """RabbitMQ unreachable for the hand-off: the committed job is not lost; its row falls
    due `grace_s` after the submit and the relay publishes it then (not before).

    Mutation checks: handed-off rows written due at once → the job started within the
    grace; `_confirmed` deleting the rows of a failed publish → the job never ran."""
    unreachable = AmqpPublisher("amqp://guest:guest@127.0.0.1:1/%2F", timeout_s=5)
    grace_s = 2.0
    handing_off = Handoff(unreachable, libpq_dsn(stack.db_url), grace_s=grace_s)
    try:
        stack.start_worker("default", processes=1, threads=2)
        stack.start_scheduler()
        with session_scope(stack.sessions) as session:
            [outcome] = submit_jobs(session, [NewJob("diag.noop", "u")], handoff=handing_off)
        job = stack.wait_state(outcome.job_id, timeout=60)
        assert job.state == "succeeded"
        assert job.started_at is not None
        assert (job.started_at - job.created_at).total_seconds() >= grace_s
    finally:
        handing_off.close()
        unreachable.close()
        stack.stop_schedulers()


def test_a_rolled_back_submit_publishes_nothing(stack: Stack, handoff: Handoff) -> None:
    """A submit whose transaction rolls back sends no message. Proven with one worker
    thread and one channel: the rolled-back job's message would have come before the next
    job's, and a worker adopts a message whose job it does not know (a foreign publisher's).

    Mutation checks: `_after_commit` publishing every staged message whatever its
    transaction, and `_after_transaction_end` not dropping a rolled-back transaction's
    (the session reused) → the rolled-back job was adopted and ran; `_after_commit` not
    skipping a released savepoint → the job rolled back after it was adopted and ran."""
    stack.stop_schedulers()
    stack.start_worker("default", processes=1, threads=1)
    with stack.sessions() as session:
        [lost] = submit_jobs(session, [NewJob("diag.noop", "u")], handoff=handoff)
        session.rollback()
        # A savepoint released after the submit is not the commit (SQLAlchemy runs
        # `after_commit` for it too): the rollback that follows still loses the job.
        [lost_after_savepoint] = submit_jobs(session, [NewJob("diag.noop", "u")], handoff=handoff)
        with session.begin_nested():
            pass
        session.rollback()
        [kept] = submit_jobs(session, [NewJob("diag.noop", "u")], handoff=handoff)
        session.commit()
    assert stack.wait_state(kept.job_id, timeout=60).state == "succeeded"
    with session_scope(stack.sessions) as session:
        assert session.get(Job, lost.job_id) is None
        assert session.get(Job, lost_after_savepoint.job_id) is None


def test_a_submit_inside_a_savepoint_is_left_to_the_relay(stack: Stack, handoff: Handoff) -> None:
    """A savepoint can roll back alone, after which the outer commit must not publish its
    jobs: inside one, the hand-off steps aside and the row is due for the relay at once."""
    stack.stop_schedulers()
    with session_scope(stack.sessions) as session, session.begin_nested():
        [outcome] = submit_jobs(session, [NewJob("diag.noop", "u")], handoff=handoff)
    with session_scope(stack.sessions) as session:
        due = session.execute(
            select(OutboxMessage.publish_after <= func.now()).where(
                OutboxMessage.job_id == outcome.job_id
            )
        ).scalar_one()
    assert due is True


def test_the_ingress_hands_off_single_jobs_and_leaves_batches_to_the_relay(stack: Stack) -> None:
    """`POST /v1/jobs` publishes without a scheduler running (the default,
    CONVEYOR_SUBMIT_HANDOFF); a `jobs:batch` waits for the relay (its rows due at once).

    Mutation checks: `submit_handoff` defaulting to false → the single job stayed queued;
    the batch route handing off → its rows were not due."""
    stack.stop_schedulers()
    stack.start_worker("default", processes=1, threads=2)
    one = stack.submit("diag.noop")
    batch = stack.client.post(
        "/v1/jobs:batch",
        json={"jobs": [{"kind": "diag.noop", "user_id": "u", "payload": {}}] * 3},
        headers=stack.headers(),
    )
    assert batch.status_code == 202, batch.text
    assert stack.wait_state(one["id"], timeout=60).state == "succeeded"
    wait_for(lambda: job_messages(stack, uuid.UUID(one["id"])) == 0, timeout=30, what="row")
    batch_ids = [uuid.UUID(job["id"]) for job in batch.json()["jobs"]]
    with session_scope(stack.sessions) as session:
        due = session.execute(
            select(OutboxMessage.publish_after <= func.now()).where(
                OutboxMessage.job_id.in_(batch_ids)
            )
        ).scalars()
        assert list(due) == [True] * 3
    stack.start_scheduler()
    for job_id in batch_ids:
        assert stack.wait_state(job_id, timeout=60).state == "succeeded"
    stack.stop_schedulers()


def test_only_rows_due_within_a_second_wake_the_relay(stack: Stack, handoff: Handoff) -> None:
    """A handed-off submit's rows (due `grace` later) send no NOTIFY; a plain submit's do.
    Notifications arrive in commit order, so those before a marker are the submits'.

    Mutation check: migration 0014's trigger notifying on every insert (0001's) → two."""
    import psycopg

    with psycopg.connect(libpq_dsn(stack.db_url), autocommit=True) as listener:
        listener.execute("LISTEN conveyor_outbox")
        with session_scope(stack.sessions) as session:
            submit_jobs(session, [NewJob("diag.noop", "u")], handoff=handoff)
        with session_scope(stack.sessions) as session:
            submit_jobs(session, [NewJob("diag.noop", "u")])
        listener.execute("NOTIFY conveyor_outbox, 'marker'")
        before_marker = 0
        for note in listener.notifies(timeout=30):
            if note.payload == "marker":
                break
            before_marker += 1
    assert before_marker == 1
