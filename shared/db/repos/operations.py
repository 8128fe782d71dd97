"""Read-only figures for operators: outbox lag, OAuth connections, the scheduler leader."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from shared.db.models import Job, OAuthConnection, OutboxMessage
from shared.db.models.jobs import TERMINAL_STATES

OUT = OutboxMessage.__table__.c
J = Job.__table__.c

# pg_locks shows an advisory lock on a bigint key as classid (high 32 bits) + objid (low).
_LEADERS = text(
    """
    SELECT a.application_name, a.client_addr::text, a.backend_start
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted
      AND l.classid = 0 AND l.objid = :key AND l.database = (
          SELECT oid FROM pg_database WHERE datname = current_database())
    """
)


def outbox_lag_s(session: Session) -> float:
    """Seconds the oldest due, unpublished outbox row has waited (0 when none)."""
    age = func.extract("epoch", func.now() - func.min(OUT.publish_after))
    stmt = select(age).where(OUT.sent_at.is_(None), OUT.publish_after <= func.now())
    value = session.execute(stmt).scalar()
    return 0.0 if value is None else max(0.0, float(value))


def oauth_connections_by_status(session: Session) -> dict[str, int]:
    stmt = select(OAuthConnection.status, func.count()).group_by(OAuthConnection.status)
    return {status: int(n) for status, n in session.execute(stmt)}


def scheduler_leaders(session: Session, lock_key: int) -> list[tuple[str, str | None]]:
    """(application_name, client address) of each session holding the leader lock."""
    rows = session.execute(_LEADERS, {"key": lock_key})
    return [(str(name), addr) for name, addr, _ in rows]


@dataclass(frozen=True)
class Finished:
    pool: str
    state: str
    count: int


def finished_since(session: Session, window_s: float) -> list[Finished]:
    """Jobs that reached a terminal state in the last `window_s`, per pool and state.

    Only jobs created within the last hour are looked at, so the created_at index bounds the
    scan; a job delayed for longer than that is missing from these figures."""
    created_after = func.now() - timedelta(hours=1)
    finished_after = func.now() - timedelta(seconds=window_s)
    stmt = (
        select(J.pool, J.state, func.count())
        .where(J.created_at >= created_after, J.finished_at >= finished_after)
        .where(J.state.in_(TERMINAL_STATES))
        .group_by(J.pool, J.state)
    )
    return [Finished(pool, state, int(n)) for pool, state, n in session.execute(stmt)]


def recent_failures(session: Session, limit: int) -> list[Job]:
    stmt = (
        select(Job)
        .where(Job.state.in_(("failed", "dead")))
        .order_by(Job.finished_at.desc().nulls_last(), Job.id)
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def connections_needing_reauth(session: Session, limit: int) -> list[OAuthConnection]:
    stmt = (
        select(OAuthConnection)
        .where(OAuthConnection.status == "needs_reauth")
        .order_by(OAuthConnection.updated_at.desc())
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())
