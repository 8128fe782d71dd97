"""Queries behind the ingress limits: queued-job caps, concurrent backups (the token buckets
are spent with the key check: shared/db/repos/api_keys.py, `admit`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from shared.db.models import Backup, Job
from shared.db.models.jobs import JOB_STATES, TERMINAL_STATES

UNFINISHED = tuple(s for s in JOB_STATES if s not in TERMINAL_STATES)  # queued, running


# Module-level statements: built and compiled once (the ORM versions rebuilt and re-keyed a
# statement per call, ~1 ms of the single submit's CPU).
_LOCK_QUEUE = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
_LOCK_QUEUE_SHARED = text("SELECT pg_advisory_xact_lock_shared(hashtextextended(:key, 0))")
_UNFINISHED = text(
    f"SELECT kind, count(*) FROM jobs WHERE tenant_id = :tenant AND state IN {UNFINISHED!r} "
    "AND kind = ANY(:kinds) GROUP BY kind"
)
_UNFINISHED_AND_BACKENDS = text(
    f"SELECT count(*), current_setting('max_connections')::int FROM jobs "
    f"WHERE tenant_id = :tenant AND state IN {UNFINISHED!r} AND kind = :kind"
)


def lock_queue(session: Session, tenant_id: str, kind: str, *, shared: bool = False) -> None:
    """Serialize cap checks of one (tenant, kind) until the transaction ends: two concurrent
    submissions cannot both see room for the last slot. `shared`: see caps.py."""
    session.execute(
        _LOCK_QUEUE_SHARED if shared else _LOCK_QUEUE, {"key": f"cap:{tenant_id}:{kind}"}
    )


def unfinished_by_kind(session: Session, tenant_id: str, kinds: Iterable[str]) -> dict[str, int]:
    """The tenant's queued or running jobs per kind (filtered here and by row-level security)."""
    rows = session.execute(_UNFINISHED, {"tenant": tenant_id, "kinds": list(kinds)}).all()
    return {kind: count for kind, count in rows}


def unfinished_and_backends(session: Session, tenant_id: str, kind: str) -> tuple[int, int]:
    """The tenant's unfinished jobs of `kind`, and how many backends the server allows."""
    count, backends = session.execute(
        _UNFINISHED_AND_BACKENDS, {"tenant": tenant_id, "kind": kind}
    ).one()
    return int(count), int(backends)


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
