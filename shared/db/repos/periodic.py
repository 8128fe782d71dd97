"""Periodic job bookkeeping: one row per schedule, locked while deciding whether it is due."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from shared.db.models import PeriodicRun


def lock_last_run(session: Session, name: str, *, epoch: datetime) -> PeriodicRun:
    """The schedule's row, locked for this transaction (created on first use)."""
    session.execute(
        pg_insert(PeriodicRun).values(name=name, last_run_at=epoch).on_conflict_do_nothing()
    )
    stmt = select(PeriodicRun).where(PeriodicRun.name == name).with_for_update()
    return session.execute(stmt).scalar_one()


def last_run(session: Session, name: str) -> datetime | None:
    stmt = select(PeriodicRun.last_run_at).where(PeriodicRun.name == name)
    return session.execute(stmt).scalar_one_or_none()
