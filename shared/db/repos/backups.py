"""Backup rows and backup settings. All SQL about them lives here (bulk data: backup_data)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from shared.db.models import Backup, BackupSettings


def add(session: Session, backup: Backup) -> Backup:
    session.add(backup)
    session.flush()
    return backup


def get(session: Session, backup_id: uuid.UUID, *, for_update: bool = False) -> Backup | None:
    query = select(Backup).where(Backup.id == backup_id)
    if for_update:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def of_user(session: Session, user_id: uuid.UUID, *, limit: int = 1000) -> list[Backup]:
    query = (
        select(Backup)
        .where(Backup.user_id == user_id)
        .order_by(Backup.created_at.desc(), Backup.id)
        .limit(limit)
    )
    return list(session.execute(query).scalars())


def latest_completed(session: Session, user_id: uuid.UUID, data_types: list[str]) -> Backup | None:
    """The newest completed backup covering exactly `data_types`: an incremental's parent."""
    query = (
        select(Backup)
        .where(
            Backup.user_id == user_id,
            Backup.status == "completed",
            Backup.data_types == data_types,
        )
        .order_by(Backup.completed_at.desc())
        .limit(1)
    )
    return session.execute(query).scalar_one_or_none()


def complete(session: Session, backup_id: uuid.UUID, **fields: Any) -> None:
    session.execute(
        update(Backup)
        .where(Backup.id == backup_id, Backup.status == "pending")
        .values(status="completed", **fields)
    )


def set_manifest(
    session: Session, backup_id: uuid.UUID, document: dict[str, Any], kid: str
) -> None:
    session.execute(
        update(Backup).where(Backup.id == backup_id).values(manifest=document, key_id=kid)
    )


def add_restore_job(session: Session, backup_id: uuid.UUID, job_id: uuid.UUID) -> None:
    session.execute(
        update(Backup)
        .where(Backup.id == backup_id)
        .values(restore_job_ids=Backup.restore_job_ids.op("||")([job_id]))
    )


def delete_many(session: Session, backup_ids: list[uuid.UUID]) -> None:
    """Children first: the parent_id foreign key refuses to strand an incremental."""
    for backup_id in backup_ids:
        session.execute(delete(Backup).where(Backup.id == backup_id))


def needing_rewrap(session: Session, current_kid: str, *, limit: int) -> list[Backup]:
    query = (
        select(Backup)
        .where(Backup.status == "completed", Backup.key_id != current_kid)
        .order_by(Backup.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.execute(query).scalars())


def get_settings(session: Session, user_id: uuid.UUID) -> BackupSettings | None:
    return session.get(BackupSettings, user_id)


def put_settings(session: Session, settings: BackupSettings) -> BackupSettings:
    merged = session.merge(settings)
    session.flush()
    return merged


def due_settings(session: Session, now: datetime, *, limit: int) -> list[BackupSettings]:
    query = (
        select(BackupSettings)
        .where(BackupSettings.enabled, BackupSettings.next_run_at <= now)
        .order_by(BackupSettings.next_run_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.execute(query).scalars())


def incrementals_since_full(session: Session, user_id: uuid.UUID, data_types: list[str]) -> int:
    """How many incrementals the user's newest chain has (scheduler: time for a full?)."""
    rows = session.execute(
        select(Backup.type)
        .where(
            Backup.user_id == user_id,
            Backup.status == "completed",
            Backup.data_types == data_types,
        )
        .order_by(Backup.completed_at.desc())
        .limit(1000)
    ).scalars()
    count = 0
    for kind in rows:
        if kind == "full":
            break
        count += 1
    return count


def count_needing_rewrap(session: Session, current_kid: str) -> int:
    query = select(func.count()).where(Backup.status == "completed", Backup.key_id != current_kid)
    return int(session.execute(query).scalar_one())
