"""Queries behind the ingress limits: token buckets, queued-job caps, concurrent backups."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from shared.db.models import Backup, Job, RateLimitBucket
from shared.db.models.jobs import JOB_STATES, TERMINAL_STATES

UNFINISHED = tuple(s for s in JOB_STATES if s not in TERMINAL_STATES)  # queued, running

# GCRA (the "generic cell rate algorithm", a token bucket kept as one timestamp): admit when
# the new theoretical arrival time is within `burst` intervals of now. One statement under
# the row lock ON CONFLICT takes, so replicas racing on one key cannot both spend a token.
_TAKE = text(
    """
    INSERT INTO rate_limit_buckets AS b (api_key_id, tat)
    VALUES (:key, CAST(:now AS timestamptz) + :interval)
    ON CONFLICT (api_key_id) DO UPDATE
      SET tat = greatest(b.tat, CAST(:now AS timestamptz)) + :interval
      WHERE greatest(b.tat, CAST(:now AS timestamptz)) + :interval
            <= CAST(:now AS timestamptz) + :tolerance
    RETURNING tat
    """
)


def take_token(
    session: Session, api_key_id: uuid.UUID, *, now: datetime, per_s: float, burst: int
) -> float:
    """Spend one token of the key's bucket. Returns 0.0 when admitted, else the seconds until
    a token is available (nothing is spent then)."""
    interval = timedelta(seconds=1.0 / per_s)
    params = {"key": api_key_id, "now": now, "interval": interval, "tolerance": interval * burst}
    if session.execute(_TAKE, params).first() is not None:
        return 0.0
    tat = session.execute(
        select(RateLimitBucket.tat).where(RateLimitBucket.api_key_id == api_key_id)
    ).scalar_one()
    wait = max(tat, now) + interval - (now + interval * burst)
    return max(wait.total_seconds(), 1e-3)


def lock_queue(session: Session, tenant_id: str, kind: str) -> None:
    """Serialize cap checks of one (tenant, kind) until the transaction ends: two concurrent
    submissions cannot both see room for the last slot."""
    session.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"cap:{tenant_id}:{kind}", 0)))
    )


def unfinished_by_kind(session: Session, tenant_id: str, kinds: Iterable[str]) -> dict[str, int]:
    """The tenant's queued or running jobs per kind (filtered here and by row-level security)."""
    rows = session.execute(
        select(Job.kind, func.count())
        .where(Job.tenant_id == tenant_id, Job.state.in_(UNFINISHED), Job.kind.in_(list(kinds)))
        .group_by(Job.kind)
    ).all()
    return {kind: count for kind, count in rows}


def unfinished_syncs(session: Session, device_id: uuid.UUID) -> int:
    """The device's `device.sync` jobs that have not finished."""
    return int(
        session.execute(
            select(func.count())
            .select_from(Job)
            .where(
                Job.kind == "device.sync",
                Job.state.in_(UNFINISHED),
                Job.payload["device_id"].astext == str(device_id),
            )
        ).scalar_one()
    )


def active_backups(session: Session, user_id: uuid.UUID) -> int:
    """Backups of the user whose `backup.create` job has not finished."""
    return int(
        session.execute(
            select(func.count())
            .select_from(Backup)
            .join(Job, Job.id == Backup.job_id)
            .where(Backup.user_id == user_id, Job.state.in_(UNFINISHED))
        ).scalar_one()
    )


def lock_user_backups(session: Session, user_id: uuid.UUID) -> None:
    session.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"backups:{user_id}", 0)))
    )
