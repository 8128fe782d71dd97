"""`file.delete`: remove a file's objects, tombstone its row, give the bytes back once."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from shared.db.repos import files as files_repo
from shared.storage.base import ObjectStore
from shared.storage.buckets import THUMBNAIL_SIZES, Bucket, thumbnail_key
from workers.uploads.errors import Reason, Rejected
from workers.uploads.policy import UploadPolicy


def delete_file(
    session: Session,
    store: ObjectStore,
    policy: UploadPolicy,
    *,
    file_id: uuid.UUID,
    user_id: str,
    now: datetime,
) -> dict[str, Any]:
    """Only a file of the job's user: another user's file is "not found", and left alone."""
    file = files_repo.get_file(session, file_id, for_update=True)
    if file is None or file.user_id != user_id:
        raise Rejected(Reason.NOT_FOUND, "no such file", file_id=file_id)
    # Deletes are idempotent and keys deterministic: safe to repeat on every delivery.
    store.delete(file.bucket, file.key)
    for size in THUMBNAIL_SIZES:
        store.delete(policy.bucket(Bucket.IMAGES), thumbnail_key(file_id, size))
    released = files_repo.mark_deleted(session, file_id, now)
    if released:
        files_repo.lock_storage(session, file.user_id)
        files_repo.add_usage(session, file.user_id, size=-file.size, files=-1)
    return {"file_id": str(file_id), "released_bytes": file.size if released else 0}
