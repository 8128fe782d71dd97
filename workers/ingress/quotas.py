"""Per-key rate limits, bounded batch work and concurrent backups (the per-tenant caps on
unfinished jobs are shared with the worker: shared/jobs/caps.py).

The token buckets live in PostgreSQL, so a key's limit holds across every ingress replica,
at the price of one single-row upsert per request, in the key check's own statement
(shared/db/repos/api_keys.py, `admit`).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db.models import SyncDevice
from shared.db.repos import limits as limits_repo
from shared.db.repos.api_keys import Admission
from shared.errors import ConveyorError, PermanentError
from shared.jobs.caps import QUEUE_FULL_RETRY_S, check_queue_caps
from shared.jobs.submit import NewJob, declared_work_s

DEFAULT_TENANT = "default"


class RateLimited(ConveyorError):
    """429 with Retry-After (whole seconds, rounded up)."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, **ids: object) -> None:
        super().__init__(message, **ids)
        self.retry_after = max(1, math.ceil(retry_after))


class TooManyBackups(RateLimited):
    code = "too_many_backups"


class BatchTooMuchWork(ConveyorError):
    code = "batch_too_much_work"


def rate_limited(admission: Admission) -> RateLimited:
    return RateLimited(
        f"rate limit of {admission.per_s:g} requests/s (bursts of {admission.burst}) exceeded; "
        f"retry in {math.ceil(admission.wait_s)} s",
        retry_after=admission.wait_s,
    )


def _work(job: NewJob) -> float:
    try:
        return declared_work_s(job.kind, job.payload)
    except PermanentError:
        return 0.0  # an invalid job: submit_jobs refuses it, naming its index


def check_batch_work(settings: Settings, jobs: Sequence[NewJob]) -> None:
    total = sum(_work(job) for job in jobs)
    if total > settings.max_batch_work_s:
        raise BatchTooMuchWork(
            f"the batch declares {total:g} s of work > {settings.max_batch_work_s:g} s; "
            "split it or submit over time"
        )


def check_concurrent_backups(session: Session, settings: Settings, user_id: uuid.UUID) -> None:
    """At most `backup_max_concurrent_per_user` unfinished backups per user (429)."""
    limit = settings.backup_max_concurrent_per_user
    limits_repo.lock_user_backups(session, user_id)
    if limits_repo.active_backups(session, user_id) >= limit:
        raise TooManyBackups(
            f"at most {limit} backup(s) at a time per user; wait for the running one",
            retry_after=QUEUE_FULL_RETRY_S,
            user_id=user_id,
        )


class TooManySyncs(RateLimited):
    code = "too_many_syncs"


def check_device_syncs(session: Session, settings: Settings, device: SyncDevice) -> None:
    """A device's sync requests count against its tenant's `device.sync` cap, and at most
    `sync_max_unfinished_per_device` of them may be unfinished (429). Its requests carry no
    API key, so this, not the key's token bucket, bounds what one device can queue."""
    check_queue_caps(session, settings, device.tenant_id, ["device.sync"])  # locks the kind
    limit = settings.sync_max_unfinished_per_device
    if limits_repo.unfinished_syncs(session, device.id) >= limit:
        raise TooManySyncs(
            f"at most {limit} unfinished syncs per device; wait for the last one's result",
            retry_after=1,
            device_id=device.id,
        )
