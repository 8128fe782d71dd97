"""Uploads, stored files and per-user storage totals. All SQL for files lives here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.db.models import Job, StoredFile, Upload, UserStorage
from shared.db.tenancy import current_tenant


def add_upload(session: Session, upload: Upload) -> Upload:
    session.add(upload)
    session.flush()
    return upload


def get_upload(session: Session, upload_id: uuid.UUID) -> Upload | None:
    return session.get(Upload, upload_id)


def get_file(
    session: Session, file_id: uuid.UUID, *, for_update: bool = False
) -> StoredFile | None:
    query = select(StoredFile).where(StoredFile.id == file_id)
    if for_update:
        query = query.with_for_update()
    return session.execute(query).scalar_one_or_none()


def insert_file(session: Session, row: dict[str, Any]) -> bool:
    """Insert the file row unless one exists for this id; True when this call inserted it."""
    inserted = session.execute(
        insert(StoredFile).values(**row).on_conflict_do_nothing().returning(StoredFile.id)
    ).scalar_one_or_none()
    return inserted is not None


def list_files(
    session: Session,
    user_id: str,
    *,
    api_key_id: uuid.UUID | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
) -> list[StoredFile]:
    """Newest first, keyset-paginated on (created_at desc, id asc)."""
    query = select(StoredFile).where(
        StoredFile.tenant_id == current_tenant(session),
        StoredFile.user_id == user_id,
        StoredFile.deleted_at.is_(None),
    )
    if api_key_id is not None:
        query = query.where(StoredFile.api_key_id == api_key_id)
    if after is not None:
        created, last_id = after
        query = query.where(
            or_(
                StoredFile.created_at < created,
                and_(StoredFile.created_at == created, StoredFile.id > last_id),
            )
        )
    query = query.order_by(StoredFile.created_at.desc(), StoredFile.id).limit(limit)
    return list(session.execute(query).scalars())


def lock_storage(session: Session, user_id: str) -> UserStorage:
    """The user's totals (in the session's tenant), created at zero if missing, locked until
    the transaction ends."""
    tenant = current_tenant(session)
    session.execute(
        insert(UserStorage)
        .values(tenant_id=tenant, user_id=user_id, bytes_used=0, file_count=0)
        .on_conflict_do_nothing()
    )
    query = (
        select(UserStorage)
        .where(UserStorage.tenant_id == tenant, UserStorage.user_id == user_id)
        .with_for_update()
    )
    return session.execute(query).scalar_one()


def storage_of(session: Session, user_id: str) -> UserStorage | None:
    return session.get(UserStorage, (current_tenant(session), user_id))


def add_usage(session: Session, user_id: str, *, size: int, files: int) -> None:
    session.execute(
        update(UserStorage)
        .where(UserStorage.tenant_id == current_tenant(session), UserStorage.user_id == user_id)
        .values(bytes_used=UserStorage.bytes_used + size, file_count=UserStorage.file_count + files)
    )


def set_thumbnails(session: Session, file_id: uuid.UUID, thumbnails: dict[str, str]) -> None:
    session.execute(
        update(StoredFile).where(StoredFile.id == file_id).values(thumbnails=thumbnails)
    )


def mark_deleted(session: Session, file_id: uuid.UUID, now: datetime) -> bool:
    """Tombstone the file; True only for the call that did it."""
    done = session.execute(
        update(StoredFile)
        .where(StoredFile.id == file_id, StoredFile.deleted_at.is_(None))
        .values(deleted_at=now)
        .returning(StoredFile.id)
    ).scalar_one_or_none()
    return done is not None


def job_states(
    session: Session, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, str | None]]:
    """State and error code of the given jobs (a file's thumbnail jobs), one query."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(Job.id, Job.state, Job.error_code).where(Job.id.in_(list(job_ids)))
    )
    return {job_id: (state, error) for job_id, state, error in rows}


def upload_job_states(session: Session, upload_ids: list[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    """Per upload: its processing job's state, or None when `complete` was never called."""
    rows = session.execute(
        select(Upload.id, Job.state)
        .outerjoin(Job, Job.id == Upload.job_id)
        .where(Upload.id.in_(upload_ids))
    ).all()
    return {upload_id: state for upload_id, state in rows}
