"""Failures of the moving parts: killed workers, dropped connections, a vanished scheduler."""

from __future__ import annotations

import json
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, text

from shared.db.engine import session_scope
from shared.db.models import Job, OutboxMessage
from shared.db.repos import outbox as outbox_repo
from shared.jobs.submit import NewJob, submit_jobs
from shared.messaging.names import EVENTS_EXCHANGE
from tests.support.logs import log_events
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
    """Every broker connection closed while jobs are running and more wait prefetched.

    The jobs last 1.5 s so the close hits work in flight: the test records which jobs were
    running at that moment and requires the worker to have seen redeliveries afterwards.
    Every job must succeed, each with exactly one `succeeded` transition."""
    stack.start_scheduler()
    stack.start_worker("default", processes=1, threads=8)
    with session_scope(stack.sessions) as session:
        new = [NewJob("diag.noop", f"u{i}", {"sleep_ms": 1500}) for i in range(40)]
        ids = [s.job_id for s in submit_jobs(session, new)]

    def running() -> list[uuid.UUID]:
        with session_scope(stack.sessions) as session:
            stmt = select(Job.id).where(Job.id.in_(ids), Job.state == "running")
            return list(session.execute(stmt).scalars())

    wait_for(lambda: len(running()) >= 4, timeout=60, what="jobs running")
    running_at_close = running()
    rabbitmqctl("close_all_connections", "-p", stack.vhost, "test: connection loss")

    for job_id in ids:
        assert stack.wait_state(job_id, timeout=120).state == "succeeded"
    assert running_at_close  # the close hit jobs in flight
    # Their unacked deliveries came back on the new connection and were skipped.
    assert log_events(stack, "worker", event="jobs.delivery_skipped", redelivered=True)
    for job_id in ids:  # a lost ack may rerun an attempt, never a success
        assert [e[2] for e in stack.events(job_id)].count("succeeded") == 1, job_id
    # The scheduler's publisher lost its connection too: a job submitted now still runs.
    with session_scope(stack.sessions) as session:
        [after] = submit_jobs(session, [NewJob("diag.noop", "after-close")])
    assert stack.wait_state(after.job_id, timeout=60).state == "succeeded"


def running_job(
    stack: Stack, *, heartbeat_age_s: float, cancel_requested: bool = False, attempt: int = 1
) -> uuid.UUID:
    """A `running` job whose worker last heartbeated `heartbeat_age_s` ago by the database's
    clock, with no message in flight: as if its worker vanished at that moment."""
    job_id = uuid.uuid4()
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    with session_scope(stack.sessions) as session:
        submit_jobs(session, [NewJob("diag.noop", "u", job_id=job_id, run_at=tomorrow)])
    with session_scope(stack.sessions) as session:
        session.execute(
            text(
                "UPDATE jobs SET state = 'running', attempt = :attempt, run_at = now(),"
                " worker = 'vanished', cancel_requested = :cancel,"
                " started_at = now() - make_interval(secs => :age),"
                " heartbeat_at = now() - make_interval(secs => :age) WHERE id = :id"
            ),
            {"id": job_id, "age": heartbeat_age_s, "cancel": cancel_requested, "attempt": attempt},
        )
    return job_id


# The stack's processes run with CONVEYOR_HEARTBEAT_STALE_S=10; the scheduler below gets 120,
# so a heartbeat 30 s old is healthy only if the override is in force.
REAPER_STALE_S = "120"


def test_reaper_requeues_a_job_whose_worker_vanished_without_redelivery(stack: Stack) -> None:
    """A job left `running` with a stale heartbeat and no message in flight is requeued and
    runs again; negative control: a job heartbeating 30 s ago (healthy under the 120 s
    threshold) is left alone. Mutation check: with the heartbeat condition removed from
    `stale_running`, the healthy job was reaped and this test failed."""
    lost = running_job(stack, heartbeat_age_s=600)
    last_attempt = running_job(stack, heartbeat_age_s=600, attempt=3)  # diag.noop: 3 attempts
    healthy = running_job(stack, heartbeat_age_s=30)
    stack.stop_schedulers()  # the module's scheduler would lead with the stack's defaults
    stack.start_scheduler(CONVEYOR_HEARTBEAT_STALE_S=REAPER_STALE_S)
    stack.start_worker("default", processes=1, threads=2)

    wait_for(
        lambda: (1, "running", "queued", "worker_lost") in stack.events(lost),
        timeout=60,
        what="the reaper taking the lost job",
    )
    # The reaper pass that took `lost` also saw `healthy` (one query) and left it running;
    # checked at once, long before its heartbeat would be 120 s old.
    job = stack.job(healthy)
    assert (job.state, job.attempt, job.worker) == ("running", 1, "vanished")
    # Its history is the submit and the claim the row records; no reaper transition.
    assert [e[2] for e in stack.events(healthy)] == ["queued", "running"]

    done = stack.wait_state(lost, "succeeded", timeout=60)
    assert done.attempt == 2
    # Out of attempts: killed (dead, with a copy in the dead-letter queue), not requeued.
    dead = stack.wait_state(last_attempt, timeout=60)
    assert (dead.state, dead.attempt, dead.error_code) == ("dead", 3, "worker_lost")
    wait_for(lambda: dead_letter_of(stack, last_attempt), timeout=30, what="dead letter")


def dead_letter_of(stack: Stack, job_id: uuid.UUID) -> bool:
    channel = stack.amqp_channel()
    try:
        while True:
            method, _, body = channel.basic_get("conveyor.default.XQ", auto_ack=False)
            if method is None:
                return False
            if json.loads(body).get("job_id") == str(job_id):
                channel.basic_ack(method.delivery_tag)
                return True
    finally:
        channel.connection.close()


def test_a_cancel_pending_when_the_worker_vanished_ends_cancelled(stack: Stack) -> None:
    """Cancel requested, then the worker died before a checkpoint: the reaper cancels the job
    (with its completion event) instead of queueing a retry. Mutation check: with the reaper
    passing `cancel_requested=False` to `after_failure`, the job was requeued and ran."""
    job_id = running_job(stack, heartbeat_age_s=600, cancel_requested=True)
    # The relay deletes what it publishes: the event is observed on the exchange.
    channel = stack.amqp_channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key="job.diag.noop.cancelled")
    stack.stop_schedulers()
    stack.start_scheduler(CONVEYOR_HEARTBEAT_STALE_S=REAPER_STALE_S)
    stack.start_worker("default", processes=1, threads=2)

    done = stack.wait_state(job_id, timeout=60)
    assert done.state == "cancelled"
    assert done.attempt == 1
    assert stack.events(job_id)[-1] == (1, "running", "cancelled", "worker_lost")
    seen: list[str] = []

    def event_arrived() -> bool:
        while (got := channel.basic_get(queue, auto_ack=True))[0] is not None:
            seen.append(json.loads(got[2])["job_id"])
        return str(job_id) in seen

    wait_for(event_arrived, timeout=30, what="the cancelled job's completion event")
    channel.connection.close()


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
    """Mutation check: with `submit_jobs` committing on its own, the job survived the
    caller's rollback and this test failed."""
    job_id = uuid.uuid4()
    with pytest.raises(RuntimeError), session_scope(stack.sessions) as session:
        submit_jobs(session, [NewJob("diag.noop", "u", job_id=job_id)])
        raise RuntimeError("the caller's transaction fails after staging the job")
    time.sleep(1.5)
    assert stack.find_job(job_id) is None
    with session_scope(stack.sessions) as session:
        bodies = session.execute(select(OutboxMessage.body)).scalars()
        assert not [b for b in bodies if str(job_id).encode() in b]


def queued_job(stack: Stack, *, age_s: float, message_sent: bool) -> uuid.UUID:
    """A due `queued` job untouched for `age_s` (database clock). `message_sent`: its message
    left the outbox (the relay deleted the published row; as far as the test is concerned it
    was lost); otherwise its outbox row still waits (due tomorrow)."""
    job_id = uuid.uuid4()
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    with session_scope(stack.sessions) as session:
        submit_jobs(session, [NewJob("diag.noop", "u", job_id=job_id, run_at=tomorrow)])
    with session_scope(stack.sessions) as session:
        session.execute(
            text(
                "UPDATE jobs SET run_at = now() - make_interval(secs => :age),"
                " updated_at = now() - make_interval(secs => :age) WHERE id = :id"
            ),
            {"id": job_id, "age": age_s},
        )
        if message_sent:
            session.execute(delete(OutboxMessage).where(OutboxMessage.job_id == job_id))
    return job_id


def outbox_rows(stack: Stack, job_id: uuid.UUID) -> list[datetime | None]:
    with session_scope(stack.sessions) as session:
        stmt = select(OutboxMessage.sent_at).where(OutboxMessage.job_id == job_id)
        return list(session.execute(stmt).scalars())


def test_queued_job_whose_message_was_lost_is_published_again(stack: Stack) -> None:
    """A due job untouched for 50 s whose message left the outbox is republished under a 45 s
    threshold (the 120 s default would wait another 70 s, past the wait below).

    Negative controls: a job of the same age whose message still waits in the outbox is
    left to the relay (mutation check: without the outbox NOT EXISTS in `stuck_queued` it
    was republished and this test failed), and a job touched just now is not republished."""
    lost = queued_job(stack, age_s=50, message_sent=True)
    waiting = queued_job(stack, age_s=50, message_sent=False)
    fresh = queued_job(stack, age_s=0, message_sent=True)
    stack.stop_schedulers()  # the module's scheduler would lead with the 120 s default
    stack.start_scheduler(CONVEYOR_REPUBLISH_QUEUED_AFTER_S="45")

    # The sweep logs each job it republishes (its new outbox row may be published and deleted
    # by the relay at once): it ran, and one pass looked at all three jobs (`fresh` becomes
    # 45 s old only well after this wait has ended).
    def republished(job_id: uuid.UUID) -> list[dict[str, object]]:
        return log_events(stack, "scheduler", event="scheduler.job_republished", job_id=str(job_id))

    wait_for(lambda: republished(lost), timeout=60, what="lost republished")
    assert outbox_rows(stack, waiting) == [None]
    assert not republished(waiting)
    assert outbox_rows(stack, fresh) == []
    assert not republished(fresh)

    stack.start_worker("default", processes=1, threads=2)
    done = stack.wait_state(lost, timeout=60)
    assert done.state == "succeeded"
    assert done.attempt == 1
    assert stack.job(waiting).state == "queued"
