"""The group-commit writer against PostgreSQL: duplicates in a batch, isolation of failures."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.db.engine import libpq_dsn, session_scope
from shared.db.repos.job_transitions import Delivery, Success
from shared.db.tenancy import DEFAULT_TENANT
from shared.jobs.state_writer import StateWriter, _ClaimRequest, _SucceedRequest
from shared.jobs.submit import NewJob, submit_jobs
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def writer(stack: Stack, **options: Any) -> StateWriter:
    return StateWriter(
        libpq_dsn(stack.db_url),
        worker="test",
        stale_s=60,
        events_exchange="conveyor.events",
        **options,
    )


def delivery(job_id: uuid.UUID, tenant: str = DEFAULT_TENANT) -> Delivery:
    return Delivery(job_id, "diag.noop", tenant)


def new_job(stack: Stack) -> uuid.UUID:
    with session_scope(stack.sessions) as session:
        [outcome] = submit_jobs(session, [NewJob("diag.noop", "u")])
    return outcome.job_id


def test_two_deliveries_of_one_job_in_a_batch_get_one_claim(stack: Stack) -> None:
    job_id = new_job(stack)
    first, second = _ClaimRequest(delivery(job_id)), _ClaimRequest(delivery(job_id))
    writer(stack)._write([first, second])
    claims = [first.future.result(), second.future.result()]
    assert [c is not None for c in claims] == [True, False]
    assert stack.job(job_id).attempt == 1


def test_a_forged_twin_ahead_in_a_batch_does_not_take_the_genuine_claim(stack: Stack) -> None:
    """A delivery naming the job under another tenant, batched before the genuine one: the
    genuine delivery gets the claim, the forged one nothing. Broken on purpose once (the
    first delivery of an id taking whatever the statement claimed): the forged one got it."""
    job_id = new_job(stack)
    forged, genuine = _ClaimRequest(delivery(job_id, "mallory")), _ClaimRequest(delivery(job_id))
    writer(stack)._write([forged, genuine])
    assert forged.future.result() is None
    claim = genuine.future.result()
    assert claim is not None and claim.tenant_id == DEFAULT_TENANT and claim.attempt == 1


def test_a_failing_success_does_not_fail_the_claims_of_its_batch(stack: Stack) -> None:
    claimed_job, other_job = new_job(stack), new_job(stack)
    w = writer(stack)
    warmup = _ClaimRequest(delivery(other_job))
    w._write([warmup])
    attempt = warmup.future.result().attempt  # type: ignore[union-attr]
    claim = _ClaimRequest(delivery(claimed_job))
    broken = _SucceedRequest(
        Success(other_job, attempt, "not json {", "job.diag.noop.succeeded", b"{}")
    )
    w._write([claim, broken])
    assert claim.future.result() is not None  # the claim committed and its waiter knows it
    with pytest.raises(Exception, match=r"(?i)json"):
        broken.future.result()
    assert stack.job(claimed_job).state == "running"
    assert stack.job(other_job).state == "running"  # the bad success changed nothing


def test_a_writer_connection_is_replaced_after_the_replan_interval(stack: Stack) -> None:
    """Generic plans are cached per connection and not re-planned as `jobs` grows: the
    writer replaces its connection after `replan_after_s` so its statements are planned for
    the table's current size (8.3 → 0.6 ms per claim on 20,000 rows). Broken on purpose
    once (the age check removed): the same backend served all three batches."""
    now = [0.0]
    w = writer(stack, replan_after_s=60, monotonic=lambda: now[0])

    def backend_after_a_claim() -> int:
        request = _ClaimRequest(delivery(new_job(stack)))
        w._write([request])
        assert request.future.result() is not None
        return int(w._connection().execute("SELECT pg_backend_pid() AS pid").fetchone().pid)

    first = backend_after_a_claim()
    now[0] = 59.0
    assert backend_after_a_claim() == first  # within the interval: the same connection
    now[0] = 61.0
    assert backend_after_a_claim() != first  # replaced: planned afresh


def test_a_lone_claim_is_written_without_waiting_for_the_gather_window(stack: Stack) -> None:
    """The gather window applies only once a batch held more than one request: on an idle
    pool a claim is not delayed. Broken on purpose once (the window applied to every batch):
    the claim waited out the 60 s window and the 20 s wait below failed."""
    w = writer(stack, gather_s=60.0)
    job_id = new_job(stack)
    claim = _ClaimRequest(delivery(job_id))
    w._submit(claim)
    assert claim.future.result(timeout=20) is not None
    assert stack.job(job_id).state == "running"
