"""Per-kind time limits end an attempt (Dramatiq's TimeLimit) and count as a retryable failure.

Runs the real runner against PostgreSQL on Dramatiq's StubBroker in this process, with a
test-only kind whose limit is one second.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from pydantic import BaseModel
from sqlalchemy.orm import Session

from shared.db.engine import session_scope
from shared.errors import TransientError
from shared.jobs.cancel import cancel_job
from shared.jobs.catalog import KindSpec, register
from shared.jobs.context import JobContext
from shared.jobs.runner import Handler, RunnerDeps, RunningJobs
from shared.jobs.submit import NewJob, submit_jobs
from shared.messaging.actors import declare_actors, job_actor
from shared.messaging.broker import conveyor_middleware
from shared.messaging.contract import JobEnvelope
from shared.messaging.names import Pool
from tests.support.kinds import restored_registries
from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


class SleepPayload(BaseModel):
    seconds: float


SLOW = KindSpec(
    kind="test.slow",
    pool=Pool.DEFAULT,
    payload_model=SleepPayload,
    max_attempts=2,
    time_limit_s=1,
    backoff_base_s=60,
    backoff_max_s=60,
)


def sleep_handler(ctx: JobContext, session: Session, payload: SleepPayload) -> dict[str, Any]:
    # Python-level work (the time limit interrupts bytecode, not a single long C call).
    deadline = time.monotonic() + payload.seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return {"slept": payload.seconds}


@contextmanager
def in_process_worker(stack: Stack, spec: KindSpec, handler: Handler) -> Iterator[StubBroker]:
    """The real runner on PostgreSQL, driven by Dramatiq's StubBroker in this process.
    The test kind is registered only inside the block."""
    with restored_registries():
        register(spec)
        job_actor(spec)(handler)
        yield from _run_stub_worker(stack)


def _run_stub_worker(stack: Stack) -> Iterator[StubBroker]:
    broker = StubBroker(middleware=conveyor_middleware())
    deps = RunnerDeps(stack.sessions, "test", RunningJobs(), stale_s=60)
    declare_actors(broker, lambda: deps)
    broker.emit_after("process_boot")  # what Dramatiq's CLI does: starts the TimeLimit timer
    worker = dramatiq.Worker(broker, worker_threads=2)
    worker.start()
    try:
        yield broker
    finally:
        worker.stop()


@pytest.fixture
def stub_worker(stack: Stack) -> Iterator[StubBroker]:
    with in_process_worker(stack, SLOW, sleep_handler) as broker:
        yield broker


def enqueue(
    broker: StubBroker, seconds: float, *, kind: str = "test.slow", job_id: uuid.UUID | None = None
) -> uuid.UUID:
    job_id = job_id or uuid.uuid4()
    envelope = JobEnvelope(
        version=1, kind=kind, user_id="u", job_id=job_id, payload={"seconds": seconds}
    )
    broker.enqueue(
        dramatiq.Message(
            queue_name="conveyor.default",
            actor_name=kind,
            args=(),
            kwargs={"envelope": envelope.model_dump(mode="json")},
            options={},
        )
    )
    return job_id


def test_an_attempt_over_the_time_limit_is_stopped_and_retried_later(
    stack: Stack, stub_worker: StubBroker
) -> None:
    started = time.monotonic()
    job_id = enqueue(stub_worker, seconds=30)
    wait_for(
        lambda: (j := stack.find_job(job_id)) is not None and j.error_code == "time_limit",
        timeout=15,
        what="time limit recorded",
    )
    assert time.monotonic() - started < 10  # stopped long before the 30 s sleep
    job = stack.job(job_id)
    assert job.state == "queued"  # attempt 1 of 2 failed: retry scheduled in PostgreSQL
    assert job.attempt == 1
    assert (1, "running", "queued", "time_limit") in stack.events(job_id)


def test_an_attempt_within_the_limit_succeeds(stack: Stack, stub_worker: StubBroker) -> None:
    job_id = enqueue(stub_worker, seconds=0.1)
    assert stack.wait_state(job_id, timeout=15).state == "succeeded"


FLAKY = KindSpec(
    kind="test.flaky",
    pool=Pool.DEFAULT,
    payload_model=SleepPayload,
    max_attempts=5,
    time_limit_s=30,
    backoff_base_s=0.1,
    backoff_max_s=0.1,
)


# Set by the test once the cancel is committed: the handler fails only after that, so the
# failure always meets a pending cancel (the order this test is about, forced).
CANCEL_COMMITTED = threading.Event()


def flaky_handler(ctx: JobContext, session: Session, payload: SleepPayload) -> dict[str, Any]:
    # No checkpoint: the cancel is only seen when the attempt fails.
    if not CANCEL_COMMITTED.wait(timeout=60):
        raise AssertionError("the test never cancelled the job")
    raise TransientError("dependency down")


def test_cancel_requested_before_a_retryable_failure_ends_cancelled(stack: Stack) -> None:
    """Mutation check: with `lifecycle.after_failure` ignoring `cancel_requested`, this job
    ended `queued` for a retry (and was never claimed again): the test failed."""
    CANCEL_COMMITTED.clear()
    with in_process_worker(stack, FLAKY, flaky_handler) as broker:
        job_id = uuid.uuid4()
        with session_scope(stack.sessions) as session:
            submit_jobs(session, [NewJob("test.flaky", "u", {"seconds": 0}, job_id=job_id)])
        enqueue(broker, 0, kind="test.flaky", job_id=job_id)
        stack.wait_state(job_id, "running", timeout=30)
        with session_scope(stack.sessions) as session:
            cancel_job(session, stack.job(job_id))
        assert stack.job(job_id).cancel_requested  # committed while the attempt still runs
        CANCEL_COMMITTED.set()
        done = stack.wait_state(job_id, timeout=30)
        assert done.state == "cancelled"  # not queued for a retry with cancel_requested set
        assert done.attempt == 1
        assert [e[2] for e in stack.events(job_id)] == ["queued", "running", "cancelled"]
