"""First sight of a job published straight onto RabbitMQ by another service: create its row."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.db.repos import jobs as jobs_repo
from shared.db.repos import outbox as outbox_repo
from shared.errors import InvalidMessage, PermanentError
from shared.jobs.caps import QueueFull, check_queue_caps
from shared.jobs.catalog import KindSpec
from shared.jobs.messages import completion_events, dead_letter, job_message
from shared.jobs.submit import NewJob, job_row, validate_payload
from shared.messaging.contract import JobEnvelope

log = structlog.get_logger("jobs")


def adopt_foreign(
    session: Session, spec: KindSpec, envelope: JobEnvelope, *, queue: str, now: datetime
) -> bool:
    """Create the job row for a foreign message. A bad payload still gets a row: failed.
    Past the tenant's cap of unfinished jobs of the kind: InvalidMessage(`queue_full`)."""
    assert envelope.job_id is not None
    new = NewJob(
        kind=envelope.kind,
        user_id=envelope.user_id,
        payload=envelope.payload,
        priority=envelope.priority,
        run_at=envelope.run_at,
        job_id=envelope.job_id,
    )
    try:
        payload = validate_payload(spec, envelope.payload)
    except PermanentError as exc:
        row = job_row(
            spec,
            new,
            job_id=envelope.job_id,
            payload=envelope.payload,
            source="wire",
            api_key_id=None,
            now=now,
            tenant_id=envelope.tenant_id,
        )
        row.update(state="failed", error_code=exc.code, error_message=exc.message, finished_at=now)
        if jobs_repo.insert_jobs(session, [row]):
            jobs_repo.add_event(
                session,
                envelope.job_id,
                attempt=0,
                from_state=None,
                to_state="failed",
                reason=exc.code,
                message=exc.message,
            )
            outbox_repo.add_many(
                session,
                [
                    *completion_events(
                        job_id=envelope.job_id,
                        kind=spec.kind,
                        user_id=envelope.user_id,
                        state="failed",
                        attempt=0,
                        tenant_id=envelope.tenant_id,
                        error_code=exc.code,
                    ),
                    dead_letter(
                        queue=queue, body=envelope.to_bytes(), reason=exc.code, detail=exc.message
                    ),
                ],
            )
        log.warning("jobs.rejected_payload", code=exc.code, detail=exc.message)
        return False
    try:
        check_queue_caps(session, get_settings(), envelope.tenant_id, [spec.kind])
    except QueueFull as exc:
        # The publisher cannot be told 429: the message waits in the DLQ (replayable) instead
        # of growing the tenant's backlog past its cap.
        raise InvalidMessage(exc.message, code="queue_full") from None
    row = job_row(
        spec,
        new,
        job_id=envelope.job_id,
        payload=payload,
        source="wire",
        api_key_id=None,
        now=now,
        tenant_id=envelope.tenant_id,
    )
    if jobs_repo.insert_jobs(session, [row]):
        jobs_repo.add_event(
            session,
            envelope.job_id,
            attempt=0,
            from_state=None,
            to_state="queued",
            reason="adopted",
        )
        if row["run_at"] > now:
            outbox_repo.add_many(
                session,
                [
                    job_message(
                        job_id=envelope.job_id,
                        kind=spec.kind,
                        user_id=envelope.user_id,
                        payload=payload,
                        priority=envelope.priority,
                        publish_after=row["run_at"],
                        tenant_id=envelope.tenant_id,
                    )
                ],
            )
    return True
