"""Scheduled backups: the scheduler's leader calls `submit_due_backups` every
CONVEYOR_BACKUP_SCHEDULE_EVERY_S; each due user gets a backup row and a `backup.create` job
in the same transaction that moves `next_run_at` on (FOR UPDATE SKIP LOCKED: two leaders in
a fail-over never double-submit)."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from shared.db.models import BackupSettings
from shared.db.repos import backups as backups_repo
from workers.backups.requests import request_backup

log = structlog.get_logger("backups")


def next_type(session: Session, settings: BackupSettings) -> str:
    """Incrementals until `full_every` of them are chained, then a fresh full."""
    if settings.type == "full":
        return "full"
    chained = backups_repo.incrementals_since_full(session, settings.user_id, settings.data_types)
    return "full" if settings.full_every and chained >= settings.full_every else "incremental"


def submit_due_backups(session: Session, *, now: datetime, limit: int = 100) -> int:
    due = backups_repo.due_settings(session, now, limit=limit)
    for settings in due:
        request_backup(
            session,
            settings.user_id,
            type=next_type(session, settings),
            data_types=settings.data_types,
            api_key_id=settings.api_key_id,
            scheduled=True,
            source="scheduler",
            tenant_id=settings.tenant_id,
        )
        settings.next_run_at = now + timedelta(seconds=settings.interval_s)
    if due:
        log.info("backups.scheduled", count=len(due))
    return len(due)
