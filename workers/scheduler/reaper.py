"""Re-queue running jobs whose worker vanished (no heartbeat) and whose message never came back;
republish queued jobs whose message was lost."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import session_scope
from shared.db.models import Job
from shared.db.repos import jobs as jobs_repo
from shared.db.repos import outbox as outbox_repo
from shared.errors import UnknownKind
from shared.jobs.catalog import DIAG_NOOP, KindSpec, get_spec
from shared.jobs.lifecycle import AfterFailure, Failure, after_failure
from shared.jobs.messages import dead_letter, events_for, requeue_message
from shared.messaging.names import queue_name

log = structlog.get_logger("scheduler")


def known_spec(kind: str) -> KindSpec:
    """A kind removed by a deploy still gets reaped (with diag's backoff), not a crash."""
    try:
        return get_spec(kind)
    except UnknownKind:
        return DIAG_NOOP


WORKER_LOST = Failure("retryable", "worker_lost", "no heartbeat")


def reap_once(sessions: sessionmaker[Session], *, stale_s: float, limit: int = 500) -> int:
    with session_scope(sessions) as session:
        stale = jobs_repo.stale_running(session, stale_s=stale_s, limit=limit)
        for job in stale:
            spec = known_spec(job.kind)
            outcome = after_failure(
                WORKER_LOST,
                attempt=job.attempt,
                max_attempts=job.max_attempts,
                cancel_requested=job.cancel_requested,
                now=datetime.now(UTC),
                backoff_base_s=spec.backoff_base_s,
                backoff_max_s=spec.backoff_max_s,
            )
            state = outcome.state.value
            jobs_repo.finish(
                session,
                job.id,
                attempt=job.attempt,
                state=state,
                error_code=WORKER_LOST.code,
                error_message=WORKER_LOST.message,
                run_at=outcome.run_at,
            )
            jobs_repo.add_event(
                session,
                job.id,
                attempt=job.attempt,
                from_state="running",
                to_state=state,
                reason=WORKER_LOST.code,
            )
            outbox_repo.add_many(session, _messages_after_reaping(job, spec, state, outcome))
            log.warning("scheduler.job_reaped", job_id=str(job.id), kind=job.kind, next_state=state)
    return len(stale)


def _messages_after_reaping(
    job: Job, spec: KindSpec, state: str, outcome: AfterFailure
) -> list[dict[str, Any]]:
    if state == "queued":
        return [requeue_message(job, publish_after=outcome.run_at)]
    messages = events_for(job, state, error_code=WORKER_LOST.code)
    if state == "dead":  # as when a worker kills it: a copy in the pool's dead-letter queue
        body = requeue_message(job)["body"]
        queue = queue_name(spec.pool)
        messages.append(
            dead_letter(queue=queue, body=body, reason=WORKER_LOST.code, detail=WORKER_LOST.message)
        )
    return messages


def republish_stuck(
    sessions: sessionmaker[Session], *, older_than_s: float, limit: int = 500
) -> int:
    """Safety net for a queued job whose message was lost to the dead-letter queue (e.g. the
    database was down when a worker tried to claim it). Duplicates are skipped by the claim."""
    with session_scope(sessions) as session:
        stuck = jobs_repo.stuck_queued(session, older_than_s=older_than_s, limit=limit)
        for job in stuck:
            job.updated_at = datetime.now(UTC)
            outbox_repo.add_many(session, [requeue_message(job)])
            log.warning("scheduler.job_republished", job_id=str(job.id), kind=job.kind)
    return len(stuck)
