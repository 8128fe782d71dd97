"""Periodic jobs: what the scheduler submits on a fixed interval.

The decision is made under a row lock on `periodic_runs`, in the same transaction that stages
the job, so a fail-over or a second scheduler never submits a period twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from shared.db.repos import periodic as periodic_repo
from shared.jobs.submit import NewJob, submit_jobs
from shared.messaging.names import Priority

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PeriodicSpec:
    name: str
    kind: str
    every: timedelta
    user_id: str = "conveyor-system"
    payload: dict[str, Any] = field(default_factory=dict)
    priority: Priority = Priority.BULK


def is_due(last_run_at: datetime, every: timedelta, now: datetime) -> bool:
    return now - last_run_at >= every


def submit_due(
    session: Session, specs: list[PeriodicSpec], *, now: Callable[[], datetime]
) -> list[str]:
    """Stage one job for every due schedule; returns the names that were due."""
    submitted = []
    for spec in specs:
        run = periodic_repo.lock_last_run(session, spec.name, epoch=EPOCH)
        at = now()
        if not is_due(run.last_run_at, spec.every, at):
            continue
        submit_jobs(
            session,
            [NewJob(spec.kind, spec.user_id, dict(spec.payload), spec.priority)],
            source="periodic",
        )
        run.last_run_at = at
        submitted.append(spec.name)
    return submitted


def builtin_schedules(*, canary_interval_s: float) -> list[PeriodicSpec]:
    """The canary: a `diag.noop` through the whole path, so dashboards see a pulse."""
    if canary_interval_s <= 0:
        return []
    return [
        PeriodicSpec(
            "canary", "diag.noop", timedelta(seconds=canary_interval_s), user_id="conveyor-canary"
        )
    ]
