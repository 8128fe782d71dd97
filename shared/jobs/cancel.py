"""Cancellation: a queued job never starts; a running one stops at its next checkpoint."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from shared.db.models import Job
from shared.db.models.jobs import TERMINAL_STATES
from shared.db.repos import jobs as jobs_repo
from shared.db.repos import outbox as outbox_repo
from shared.errors import PermanentError
from shared.jobs.messages import events_for


class NotCancellable(PermanentError):
    code = "not_cancellable"


def cancel_job(session: Session, job: Job) -> Job:
    locked = jobs_repo.lock_for_update(session, job.id)
    assert locked is not None
    if locked.state in TERMINAL_STATES:
        raise NotCancellable(f"job is already {locked.state}", job_id=job.id)
    if locked.state == "queued":
        _cancel_queued(session, locked)
    else:
        locked.cancel_requested = True
    locked.updated_at = datetime.now(UTC)
    session.flush()
    return locked


def _cancel_queued(session: Session, job: Job) -> None:
    previous = job.state
    job.state = "cancelled"
    job.cancel_requested = True
    job.finished_at = datetime.now(UTC)
    job.error_code = "cancelled"
    jobs_repo.add_event(
        session,
        job.id,
        attempt=job.attempt,
        from_state=previous,
        to_state="cancelled",
        reason="cancelled",
    )
    outbox_repo.add_many(session, events_for(job, "cancelled", error_code="cancelled"))
