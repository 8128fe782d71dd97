"""The scheduler's export tick: delete expired files, then fire due schedules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.repos import exports as exports_repo
from shared.storage.base import ObjectStore
from workers.exports.schedules import fire_due

log = structlog.get_logger("exports")

BATCH = 200


def expire_once(session: Session, store: ObjectStore, now: datetime, limit: int = BATCH) -> int:
    """Delete the files of expired exports and mark them `expired` (idempotent: a missing
    object is already gone; rows are locked SKIP LOCKED, so two sweeps never collide)."""
    expired = exports_repo.due_for_expiry(session, now, limit)
    for export in expired:
        if export.bucket and export.key:
            store.delete(export.bucket, export.key)
        export.status = "expired"
    if expired:
        log.info("exports.files_expired", count=len(expired))
    return len(expired)


def make_tick(settings: Settings) -> Callable[[sessionmaker[Session]], None]:
    """What the scheduler runs every `CONVEYOR_EXPORT_SWEEP_INTERVAL_S`."""
    store: ObjectStore | None = None
    if settings.s3_endpoint:
        from shared.storage.s3 import S3Store

        store = S3Store.from_settings(settings)

    def tick(sessions: sessionmaker[Session]) -> None:
        now = datetime.now(UTC)
        if store is not None:
            with session_scope(sessions) as session:
                expire_once(session, store, now)
        with session_scope(sessions) as session:
            fire_due(session, now)

    return tick
