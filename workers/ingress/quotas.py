"""Per-key rate limits, per-tenant caps on unfinished jobs, and bounded batch work.

The token buckets live in PostgreSQL (shared/db/repos/limits.py), so a key's limit holds
across every ingress replica, at the price of one single-row upsert per request.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from fastapi import Request
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.models import ApiKey
from shared.db.repos import limits as limits_repo
from shared.errors import ConveyorError, PermanentError
from shared.jobs.submit import NewJob, declared_work_s

DEFAULT_TENANT = "default"
# A full queue drains at the pool's pace, unknown here: a hint, not a promise.
QUEUE_FULL_RETRY_S = 30

Clock = Callable[[], datetime]


class RateLimited(ConveyorError):
    """429 with Retry-After (whole seconds, rounded up)."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, **ids: object) -> None:
        super().__init__(message, **ids)
        self.retry_after = max(1, math.ceil(retry_after))


class QueueFull(RateLimited):
    code = "queue_full"


class TooManyBackups(RateLimited):
    code = "too_many_backups"


class BatchTooMuchWork(ConveyorError):
    code = "batch_too_much_work"


def enforce_rate_limit(request: Request, key: ApiKey) -> None:
    """Spend one token of the key's bucket, in a transaction of its own: a request that
    fails later (a 4xx, a rollback) has still cost its token."""
    settings: Settings = request.app.state.settings
    clock: Clock = request.app.state.clock
    per_s = key.rate_limit_per_s or settings.rate_limit_per_s
    burst = key.rate_limit_burst or settings.rate_limit_burst
    with session_scope(request.app.state.sessions) as session:
        wait = limits_repo.take_token(session, key.id, now=clock(), per_s=per_s, burst=burst)
    if wait > 0:
        raise RateLimited(
            f"rate limit of {per_s:g} requests/s (bursts of {burst}) exceeded; "
            f"retry in {math.ceil(wait)} s",
            retry_after=wait,
        )


def cap_for(settings: Settings, kind: str) -> int:
    return settings.queue_caps_by_kind.get(kind, settings.queue_cap_per_kind)


def check_queue_caps(
    session: Session, settings: Settings, key: ApiKey, jobs: Sequence[NewJob]
) -> None:
    """Refuse the submission as a whole if any kind would exceed the tenant's cap of
    unfinished jobs. Holds a per-(tenant, kind) lock until the caller's commit."""
    tenant = key.tenant_id
    wanted = Counter(job.kind for job in jobs)
    for kind in sorted(wanted):
        limits_repo.lock_queue(session, tenant, kind)
    unfinished = limits_repo.unfinished_by_kind(session, tenant, wanted)
    for kind, count in sorted(wanted.items()):
        cap, now = cap_for(settings, kind), unfinished.get(kind, 0)
        if now + count > cap:
            raise QueueFull(
                f"{kind}: {now} unfinished + {count} new > cap {cap} for this tenant",
                retry_after=QUEUE_FULL_RETRY_S,
                kind=kind,
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
