"""The group-commit writer against PostgreSQL: duplicates in a batch, isolation of failures."""

from __future__ import annotations

import uuid

import pytest

from shared.db.engine import libpq_dsn, session_scope
from shared.db.repos.job_transitions import Success
from shared.jobs.state_writer import StateWriter, _ClaimRequest, _SucceedRequest
from shared.jobs.submit import NewJob, submit_jobs
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def writer(stack: Stack) -> StateWriter:
    return StateWriter(
        libpq_dsn(stack.db_url), worker="test", stale_s=60, events_exchange="conveyor.events"
    )


def new_job(stack: Stack) -> uuid.UUID:
    with session_scope(stack.sessions) as session:
        [outcome] = submit_jobs(session, [NewJob("diag.noop", "u")])
    return outcome.job_id


def test_two_deliveries_of_one_job_in_a_batch_get_one_claim(stack: Stack) -> None:
    job_id = new_job(stack)
    first, second = _ClaimRequest(job_id), _ClaimRequest(job_id)
    writer(stack)._write([first, second])
    claims = [first.future.result(), second.future.result()]
    assert [c is not None for c in claims] == [True, False]
    assert stack.job(job_id).attempt == 1


def test_a_failing_success_does_not_fail_the_claims_of_its_batch(stack: Stack) -> None:
    claimed_job, other_job = new_job(stack), new_job(stack)
    w = writer(stack)
    warmup = _ClaimRequest(other_job)
    w._write([warmup])
    attempt = warmup.future.result().attempt  # type: ignore[union-attr]
    claim = _ClaimRequest(claimed_job)
    broken = _SucceedRequest(
        Success(other_job, attempt, "not json {", "job.diag.noop.succeeded", b"{}")
    )
    w._write([claim, broken])
    assert claim.future.result() is not None  # the claim committed and its waiter knows it
    with pytest.raises(Exception, match=r"(?i)json"):
        broken.future.result()
    assert stack.job(claimed_job).state == "running"
    assert stack.job(other_job).state == "running"  # the bad success changed nothing
