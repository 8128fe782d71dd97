"""One attempt of one job: claim, run the handler, record the outcome. No Dramatiq here.

Acknowledgement happens after `execute` returns, i.e. after the outcome is committed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from threading import Lock
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import session_scope
from shared.db.repos import jobs as jobs_repo
from shared.db.repos.job_transitions import (
    Claim,
    Delivery,
    Success,
    claim_in_session,
    succeed_in_session,
)
from shared.db.tenancy import act_as_owner, tenant_sessions
from shared.errors import InvalidMessage, PermanentError
from shared.jobs.adopt import adopt_foreign
from shared.jobs.catalog import KindSpec
from shared.jobs.context import JobContext, LostOwnership
from shared.jobs.messages import event_message, publishes_completion
from shared.jobs.outcomes import classify, record_failure
from shared.jobs.state_writer import StateWriter
from shared.messaging.contract import JobEnvelope
from shared.messaging.names import EVENTS_EXCHANGE
from shared.messaging.wire_auth import Origin
from shared.metrics import JOB_DURATION, JOBS_FINISHED
from shared.storage.base import ObjectStore

log = structlog.get_logger("jobs")

Handler = Callable[[JobContext, Session, Any], dict[str, Any] | None]


@dataclass
class RunningJobs:
    """Jobs this process runs now; the heartbeat thread refreshes them.

    A job is reserved *before* it is claimed, so a second delivery of it to this process (a
    duplicate or a redelivery after a connection drop) is skipped instead of taking over the
    job from the thread that runs it.
    """

    _owned: dict[uuid.UUID, int] = field(default_factory=dict)
    _lock: Lock = field(default_factory=Lock)

    def reserve(self, job_id: uuid.UUID) -> bool:
        with self._lock:
            if job_id in self._owned:
                return False
            self._owned[job_id] = 0  # attempt unknown until the claim returns
            return True

    def add(self, job_id: uuid.UUID, attempt: int) -> None:
        with self._lock:
            self._owned[job_id] = attempt

    def release(self, job_id: uuid.UUID) -> None:
        with self._lock:
            self._owned.pop(job_id, None)

    def holds(self, job_id: uuid.UUID) -> bool:
        with self._lock:
            return job_id in self._owned

    def snapshot(self) -> list[tuple[uuid.UUID, int]]:
        with self._lock:
            return [(job_id, a) for job_id, a in self._owned.items() if a > 0]


@dataclass(frozen=True)
class RunnerDeps:
    sessions: sessionmaker[Session]
    worker_name: str
    running: RunningJobs
    stale_s: float
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    writer: StateWriter | None = None  # group commit for the hot path; None: per-job writes
    store: Callable[[], ObjectStore] | None = None  # lazily built object store for handlers


def execute(
    deps: RunnerDeps,
    spec: KindSpec,
    handler: Handler,
    envelope: JobEnvelope,
    *,
    queue: str,
    redelivered: bool,
    origin: Origin | None = None,
) -> str:
    """Run one delivery of `envelope`; returns what happened (for logs and tests).

    `origin` is the authenticated publisher (None: a caller inside this process, tests).

    Exceptions that escape (the database unreachable, a bug outside the handler) are the
    delivery guard's to handle: it requeues or dead-letters the message, never drops it.
    """
    assert envelope.job_id is not None, "the consumer assigns ids to id-less messages"
    job_id = envelope.job_id
    with structlog.contextvars.bound_contextvars(
        job_id=str(job_id),
        kind=envelope.kind,
        user_id=envelope.user_id,
        tenant_id=envelope.tenant_id,
        publisher=origin.publisher if origin else None,
    ):
        if not deps.running.reserve(job_id):
            log.info("jobs.delivery_skipped", state="running_here", redelivered=redelivered)
            return "skipped"
        try:
            claim = _claim_or_adopt(deps, spec, envelope, queue=queue, redelivered=redelivered)
            if claim is None:
                return "skipped"
            deps.running.add(job_id, claim.attempt)
            if claim.took_over:
                log.warning("jobs.taken_over", attempt=claim.attempt)
            return _run_claimed(deps, spec, handler, claim, envelope, queue=queue)
        finally:
            deps.running.release(job_id)


def _claim_or_adopt(
    deps: RunnerDeps, spec: KindSpec, envelope: JobEnvelope, *, queue: str, redelivered: bool
) -> Claim | None:
    job_id = envelope.job_id
    assert job_id is not None
    delivery = Delivery(job_id, spec.kind, envelope.tenant_id)
    if deps.writer is not None:
        claim = deps.writer.claim(delivery)
        if claim is not None:
            return claim
    with session_scope(deps.sessions) as session:
        if deps.writer is None:
            claim = claim_in_session(
                session, delivery, worker=deps.worker_name, stale_s=deps.stale_s
            )
            if claim is not None:
                return claim
        known = jobs_repo.identity_of(session, job_id)
        if known is not None:
            if (known.kind, known.tenant_id) != (spec.kind, envelope.tenant_id):
                # The id names a job of another kind or tenant (a forged or colliding id):
                # that job is not this message's to run, and the message is not ours to drop.
                raise InvalidMessage(
                    f"job {job_id} is not a {spec.kind} job of tenant {envelope.tenant_id!r}",
                    code="job_mismatch",
                )
            log.info("jobs.delivery_skipped", state=known.state, redelivered=redelivered)
            return None
        # First sight of a job published straight onto RabbitMQ by another service.
        # The database's clock: the claim below compares run_at with it.
        now = jobs_repo.database_now(session)
        if not adopt_foreign(session, spec, envelope, queue=queue, now=now):
            return None
        claim = claim_in_session(session, delivery, worker=deps.worker_name, stale_s=deps.stale_s)
        if claim is None:
            log.info("jobs.adopted_for_later", run_at=str(envelope.run_at))
        return claim


def _run_claimed(
    deps: RunnerDeps,
    spec: KindSpec,
    handler: Handler,
    claim: Claim,
    envelope: JobEnvelope,
    *,
    queue: str,
) -> str:
    # The handler's transactions act as the job's tenant (RLS), taken from the claimed row;
    # the bookkeeping around it (claim, success, failure) runs as the owner.
    ctx = JobContext(
        claim.job_id,
        claim.kind,
        claim.user_id,
        claim.attempt,
        claim.max_attempts,
        tenant_sessions(deps.sessions, claim.tenant_id),
        store_factory=deps.store,
        tenant_id=claim.tenant_id,
    )
    log.debug("jobs.started", attempt=claim.attempt)
    started = time.perf_counter()
    try:
        payload = _stored_payload(spec, claim.payload)
        _run_and_commit(deps, ctx, handler, payload)
        outcome = "succeeded"
    except LostOwnership:
        log.warning("jobs.ownership_lost", attempt=claim.attempt)
        return "lost"
    except BaseException as exc:
        failure = classify(exc)
        if failure is None:
            raise
        outcome = record_failure(
            deps.sessions, spec, ctx, failure, envelope, queue=queue, now=deps.clock()
        )
    finally:
        JOB_DURATION.labels(spec.kind).observe(time.perf_counter() - started)
    JOBS_FINISHED.labels(spec.kind, outcome).inc()
    log.info("jobs.finished", state=outcome, attempt=claim.attempt)
    return outcome


def _run_and_commit(
    deps: RunnerDeps, ctx: JobContext, handler: Handler, payload: BaseModel
) -> None:
    with session_scope(ctx.sessions) as session:
        result = handler(ctx, session, payload)
        # Serialized here, so a bad result fails this job alone, not the batch it would join.
        result_json = json.dumps(result)
        routing_key, body = None, None
        if publishes_completion(ctx.kind, "succeeded"):
            event = event_message(
                job_id=ctx.job_id,
                kind=ctx.kind,
                user_id=ctx.user_id,
                state="succeeded",
                attempt=ctx.attempt,
                tenant_id=ctx.tenant_id,
                result=result,
            )
            routing_key, body = event["routing_key"], event["body"]
        success = Success(ctx.job_id, ctx.attempt, result_json, routing_key, body)
        if deps.writer is not None and not session.in_transaction():
            # The handler wrote nothing here: its success can join the group commit.
            succeeded = deps.writer.succeed(success)
        else:
            act_as_owner(session)  # the success is the spine's write, in the same transaction
            succeeded = succeed_in_session(session, success, exchange=EVENTS_EXCHANGE)
        if not succeeded:
            raise LostOwnership(str(ctx.job_id))


def _stored_payload(spec: KindSpec, payload: dict[str, Any]) -> BaseModel:
    """A stored payload that no longer validates (the model changed) cannot succeed on retry."""
    try:
        return spec.payload_model.model_validate(payload)
    except ValidationError as exc:
        raise PermanentError(
            f"stored payload is invalid: {exc.errors()[0]['msg']}", code="invalid_payload"
        ) from None
