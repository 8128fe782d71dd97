"""What a failed attempt becomes: retry with backoff, failed, cancelled or dead (+ dead letter)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import session_scope
from shared.db.repos import jobs as jobs_repo
from shared.db.repos import outbox as outbox_repo
from shared.errors import JobCancelled, PermanentError, TransientError, public_failure
from shared.jobs.catalog import KindSpec
from shared.jobs.context import JobContext
from shared.jobs.lifecycle import Failure, JobState, after_failure
from shared.jobs.messages import completion_events, dead_letter, job_message
from shared.messaging.contract import JobEnvelope
from shared.metrics import JOB_RETRIES

log = structlog.get_logger("jobs")


def classify(exc: BaseException) -> Failure | None:
    """Map an exception to a recorded outcome; None means 'not ours to swallow'."""
    from dramatiq.middleware.time_limit import TimeLimitExceeded

    if isinstance(exc, JobCancelled):
        return Failure("cancelled", "cancelled", "cancelled at a checkpoint")
    if isinstance(exc, PermanentError):
        return Failure("failed", exc.code, exc.message)
    if isinstance(exc, TimeLimitExceeded):
        return Failure("retryable", "time_limit", "attempt exceeded the kind's time limit")
    if isinstance(exc, TransientError):
        return Failure("retryable", exc.code, exc.message, exc.retry_after)
    if isinstance(exc, Exception):
        # Raw text (S3 bucket and request ids, SQL) only in the log; the job row is public.
        log.warning("jobs.unexpected_error", error=type(exc).__name__, exc_info=exc)
        code, message = public_failure(exc)
        return Failure("retryable", code, message)
    return None  # KeyboardInterrupt, SystemExit, dramatiq Shutdown: let the process stop


def record_failure(
    sessions: sessionmaker[Session],
    spec: KindSpec,
    ctx: JobContext,
    failure: Failure,
    envelope: JobEnvelope,
    *,
    queue: str,
    now: datetime,
) -> str:
    """Write what the failed attempt becomes (retry, failed, cancelled, dead) with its
    history row and outbox rows, only if this attempt still owns the job."""
    with session_scope(sessions) as session:
        job = jobs_repo.lock_for_update(session, ctx.job_id)
        if job is None or job.state != JobState.RUNNING or job.attempt != ctx.attempt:
            log.warning("jobs.ownership_lost", attempt=ctx.attempt)
            return "lost"
        outcome = after_failure(
            failure,
            attempt=ctx.attempt,
            max_attempts=ctx.max_attempts,
            cancel_requested=job.cancel_requested,
            now=now,
            backoff_base_s=spec.backoff_base_s,
            backoff_max_s=spec.backoff_max_s,
        )
        state = outcome.state.value
        jobs_repo.finish(
            session,
            ctx.job_id,
            attempt=ctx.attempt,
            state=state,
            error_code=failure.code,
            error_message=failure.message,
            run_at=outcome.run_at,
        )
        jobs_repo.add_event(
            session,
            ctx.job_id,
            attempt=ctx.attempt,
            from_state="running",
            to_state=state,
            reason=failure.code,
            message=failure.message,
        )
        outbox_repo.add_many(
            session, _failure_messages(ctx, envelope, state, failure, queue, outcome.run_at)
        )
    if state == "queued":
        JOB_RETRIES.labels(spec.kind).inc()
    log.warning("jobs.attempt_failed", code=failure.code, detail=failure.message, next_state=state)
    return state


def _failure_messages(
    ctx: JobContext,
    envelope: JobEnvelope,
    state: str,
    failure: Failure,
    queue: str,
    run_at: datetime | None,
) -> list[dict[str, Any]]:
    if state == "queued":
        return [
            job_message(
                job_id=ctx.job_id,
                kind=ctx.kind,
                user_id=ctx.user_id,
                payload=envelope.payload,
                priority=envelope.priority,
                publish_after=run_at,
                tenant_id=ctx.tenant_id,
            )
        ]
    messages = completion_events(
        job_id=ctx.job_id,
        kind=ctx.kind,
        user_id=ctx.user_id,
        state=state,
        attempt=ctx.attempt,
        tenant_id=ctx.tenant_id,
        error_code=failure.code,
    )
    if state == "dead":
        messages.append(
            dead_letter(
                queue=queue, body=envelope.to_bytes(), reason=failure.code, detail=failure.message
            )
        )
    return messages
