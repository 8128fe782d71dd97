"""Claim, take-over and fencing rules against PostgreSQL, without workers or a broker.

These are the statements every worker runs (shared/db/repos/job_transitions.py), so each
rule of docs/lifecycle.md is checked here directly.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from shared.db.engine import session_scope
from shared.db.models import Job, OutboxMessage
from shared.db.repos import jobs as jobs_repo
from shared.db.repos.job_transitions import (
    Delivery,
    Success,
    claim_in_session,
    succeed_in_session,
)
from shared.db.tenancy import DEFAULT_TENANT
from shared.jobs.catalog import DIAG_NOOP
from shared.jobs.context import JobContext
from shared.jobs.lifecycle import Failure
from shared.jobs.outcomes import record_failure
from shared.jobs.submit import NewJob, submit_jobs
from shared.messaging.contract import JobEnvelope
from shared.messaging.names import EVENTS_EXCHANGE
from tests.support.stack import Stack
from workers.scheduler.reaper import reap_once

pytestmark = pytest.mark.integration
STALE_S = 30.0


def new_job(stack: Stack, **fields: object) -> uuid.UUID:
    with session_scope(stack.sessions) as session:
        [outcome] = submit_jobs(session, [NewJob("diag.noop", "u", **fields)])  # type: ignore[arg-type]
    return outcome.job_id


def claim(stack: Stack, job_id: uuid.UUID, worker: str = "w1"):  # type: ignore[no-untyped-def]
    with session_scope(stack.sessions) as session:
        return claim_in_session(
            session, Delivery(job_id, "diag.noop", DEFAULT_TENANT), worker=worker, stale_s=STALE_S
        )


def age_heartbeat(stack: Stack, job_id: uuid.UUID, seconds: float) -> None:
    with session_scope(stack.sessions) as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=seconds))
        )


def test_a_healthy_running_job_is_not_taken_over_by_another_worker(stack: Stack) -> None:
    """Even when its message comes back redelivered: the owner may still be running it.
    Mutation check: without the heartbeat condition in CLAIM_SQL, w2 took the job over."""
    job_id = new_job(stack)
    assert claim(stack, job_id, "w1") is not None
    assert claim(stack, job_id, "w2") is None
    assert stack.job(job_id).attempt == 1


def test_a_job_whose_owner_stopped_heartbeating_is_taken_over_with_history(stack: Stack) -> None:
    """Mutation check: with take-over allowed to the owner only, w2 got nothing."""
    job_id = new_job(stack)
    claim(stack, job_id, "w1")
    age_heartbeat(stack, job_id, STALE_S + 5)
    taken = claim(stack, job_id, "w2")
    assert taken is not None and taken.took_over and taken.attempt == 2
    assert stack.job(job_id).worker == "w2"
    assert (2, "running", "running", "take_over") in stack.events(job_id)


def test_a_delivery_claims_only_a_job_of_its_own_kind_and_tenant(stack: Stack) -> None:
    """The runner acts as the claimed row's tenant, so the claim itself must refuse a
    delivery whose kind or tenant differs from the row's. Mutation check: with the `wanted`
    join reduced to the id, both foreign claims took the job."""
    job_id = new_job(stack)
    for kind, tenant in (("file.delete", DEFAULT_TENANT), ("diag.noop", "another-tenant")):
        with session_scope(stack.sessions) as session:
            foreign = Delivery(job_id, kind, tenant)
            assert claim_in_session(session, foreign, worker="w9", stale_s=STALE_S) is None
    assert (stack.job(job_id).state, stack.job(job_id).attempt) == ("queued", 0)
    own = claim(stack, job_id)
    assert own is not None and (own.kind, own.tenant_id) == ("diag.noop", DEFAULT_TENANT)


def test_the_owner_itself_may_take_back_a_job_it_knows_it_is_not_running(stack: Stack) -> None:
    """A claim whose commit reply was lost: the same process re-claims at once."""
    job_id = new_job(stack)
    claim(stack, job_id, "w1")
    again = claim(stack, job_id, "w1")
    assert again is not None and again.took_over and again.attempt == 2


def test_a_job_is_never_claimed_before_run_at(stack: Stack) -> None:
    """Before: the claim allowed one second early (mutation check: `run_at <=
    clock_timestamp() + interval '1 second'` made this test fail again)."""
    job_id = new_job(stack, run_at=datetime.now(UTC) + timedelta(seconds=30))
    with session_scope(stack.sessions) as session:
        session.execute(
            text(
                "UPDATE jobs SET run_at = clock_timestamp() + interval '500 milliseconds'"
                " WHERE id = :id"
            ),
            {"id": job_id},
        )
    assert claim(stack, job_id) is None
    with session_scope(stack.sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(run_at=datetime.now(UTC)))
    assert claim(stack, job_id) is not None


def test_a_job_with_a_cancel_requested_is_never_claimed(stack: Stack) -> None:
    """Mutation check: without `NOT j.cancel_requested` in CLAIM_SQL the job was claimed."""
    job_id = new_job(stack)
    with session_scope(stack.sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    assert claim(stack, job_id) is None


def test_a_stale_attempt_writes_nothing_after_a_take_over(stack: Stack) -> None:
    """Fencing: attempt 1 finishing after attempt 2 took over changes no state, adds no
    history and publishes no event. Mutation check: without `j.attempt = i.attempt` in
    SUCCEED_SQL, the stale success was written."""
    job_id = new_job(stack)
    first = claim(stack, job_id, "w1")
    age_heartbeat(stack, job_id, STALE_S + 5)
    second = claim(stack, job_id, "w2")
    assert first is not None and second is not None
    before = stack.events(job_id)
    with session_scope(stack.sessions) as session:
        stale = Success(job_id, first.attempt, "{}", "job.diag.noop.succeeded", b"{}")
        assert not succeed_in_session(session, stale, exchange=EVENTS_EXCHANGE)
        assert (
            jobs_repo.checkpoint(session, job_id, attempt=first.attempt, progress=0.5, message=None)
            is None
        )
    ctx = JobContext(job_id, "diag.noop", "u", first.attempt, 3, stack.sessions)
    envelope = JobEnvelope(version=1, kind="diag.noop", user_id="u", job_id=job_id)
    lost = record_failure(
        stack.sessions,
        DIAG_NOOP,
        ctx,
        Failure("retryable", "error", "late"),
        envelope,
        queue="conveyor.default",
        now=datetime.now(UTC),
    )
    assert lost == "lost"
    assert stack.events(job_id) == before
    job = stack.job(job_id)
    assert (job.state, job.attempt, job.worker) == ("running", 2, "w2")
    with session_scope(stack.sessions) as session:
        events = session.execute(
            select(OutboxMessage).where(OutboxMessage.exchange == EVENTS_EXCHANGE)
        ).scalars()
        assert not [e for e in events if str(job_id).encode() in e.body]


@pytest.mark.parametrize(
    ("failure", "attempt", "state"),
    [
        (Failure("failed", "bad_input", "no"), 1, "failed"),
        (Failure("retryable", "error", "boom"), 3, "dead"),
        (Failure("cancelled", "cancelled", "at checkpoint"), 1, "cancelled"),
    ],
)
def test_every_terminal_failure_publishes_a_completion_event(
    stack: Stack, failure: Failure, attempt: int, state: str
) -> None:
    job_id = new_job(stack)
    with session_scope(stack.sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(attempt=attempt - 1))
    claimed = claim(stack, job_id)
    assert claimed is not None and claimed.attempt == attempt
    ctx = JobContext(job_id, "diag.noop", "u", attempt, 3, stack.sessions)
    envelope = JobEnvelope(version=1, kind="diag.noop", user_id="u", job_id=job_id)
    outcome = record_failure(
        stack.sessions,
        DIAG_NOOP,
        ctx,
        failure,
        envelope,
        queue="conveyor.default",
        now=datetime.now(UTC),
    )
    assert outcome == state
    with session_scope(stack.sessions) as session:
        bodies = session.execute(
            select(OutboxMessage.body).where(
                OutboxMessage.exchange == EVENTS_EXCHANGE,
                OutboxMessage.routing_key == f"job.diag.noop.{state}",
            )
        ).scalars()
        assert [b for b in bodies if str(job_id).encode() in b]
    assert (attempt, "running", state, failure.code) in stack.events(job_id)


def test_the_reaper_kills_a_vanished_job_out_of_attempts_and_dead_letters_it(
    stack: Stack,
) -> None:
    """Same decision as a worker's: the last attempt lost → dead, event and dead letter."""
    job_id = new_job(stack)
    with session_scope(stack.sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(attempt=2))
    assert claim(stack, job_id) is not None  # attempt 3 of 3
    age_heartbeat(stack, job_id, STALE_S + 5)
    assert reap_once(stack.sessions, stale_s=STALE_S) >= 1
    job = stack.job(job_id)
    assert (job.state, job.error_code) == ("dead", "worker_lost")
    assert (3, "running", "dead", "worker_lost") in stack.events(job_id)
    with session_scope(stack.sessions) as session:
        letters = session.execute(
            select(OutboxMessage).where(OutboxMessage.routing_key == "conveyor.default.XQ")
        ).scalars()
        assert [m for m in letters if str(job_id).encode() in m.body]


def test_a_retried_job_keeps_every_claim_in_its_history(stack: Stack) -> None:
    """Claims are not stored while they run (the row's started_at carries them), so leaving
    `running` must store the attempt's claim: a retry, then a take-over, then success show
    every transition in order, with the time each claim had.
    Mutation checks: without the stored claim in `add_event`, attempt 1's claim vanished;
    without the replaced attempt's claim in CLAIM_SQL, attempt 2's claim vanished."""
    job_id = new_job(stack)
    first = claim(stack, job_id, "w1")
    assert first is not None
    first_started = stack.job(job_id).started_at
    ctx = JobContext(job_id, "diag.noop", "u", 1, 3, stack.sessions)
    envelope = JobEnvelope(version=1, kind="diag.noop", user_id="u", job_id=job_id)
    failure = Failure("retryable", "error", "boom")
    now = datetime.now(UTC)
    assert (
        record_failure(
            stack.sessions, DIAG_NOOP, ctx, failure, envelope, queue="conveyor.default", now=now
        )
        == "queued"
    )
    with session_scope(stack.sessions) as session:
        session.execute(update(Job).where(Job.id == job_id).values(run_at=now))
    second = claim(stack, job_id, "w1")
    assert second is not None and second.attempt == 2
    second_started = stack.job(job_id).started_at
    age_heartbeat(stack, job_id, STALE_S + 5)
    third = claim(stack, job_id, "w2")
    assert third is not None and third.took_over and third.attempt == 3
    with session_scope(stack.sessions) as session:
        ok = succeed_in_session(
            session, Success(job_id, 3, "null", "job.diag.noop.succeeded", b"{}"),
            exchange=EVENTS_EXCHANGE,
        )  # fmt: skip
    assert ok
    assert stack.events(job_id) == [
        (0, None, "queued", None),
        (1, "queued", "running", None),
        (1, "running", "queued", "error"),
        (2, "queued", "running", None),
        (3, "running", "running", "take_over"),
        (3, "running", "succeeded", None),
    ]
    assert [e[:3] for e in stack.stored_events(job_id)] == [
        (1, "queued", "running"),
        (1, "running", "queued"),
        (2, "queued", "running"),
        (3, "running", "running"),
    ]
    with session_scope(stack.sessions) as session:
        history = jobs_repo.history_of(session, job_id)
    assert history[1].at == first_started and history[3].at == second_started
