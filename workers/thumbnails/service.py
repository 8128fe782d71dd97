"""`image.thumbnail`: WebP thumbnails at deterministic keys, recorded on the file row."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from shared.db.repos import files as files_repo
from shared.storage.base import ObjectStore
from shared.storage.buckets import THUMBNAIL_SIZES, thumbnail_key
from workers.thumbnails.render import render_thumbnails
from workers.uploads.errors import Reason, Rejected


def generate_thumbnails(
    session: Session,
    store: ObjectStore,
    *,
    file_id: uuid.UUID,
    user_id: str,
    bucket: str,
    max_pixels: int,
) -> dict[str, Any]:
    file = files_repo.get_file(session, file_id)
    if file is None or file.user_id != user_id:  # another user's file: "not found"
        raise Rejected(Reason.NOT_FOUND, "no such file", file_id=file_id)
    if file.deleted_at is not None:
        return {"file_id": str(file_id), "skipped": "deleted"}
    if file.thumbnails:  # redelivered after success
        return {"file_id": str(file_id), "thumbnails": file.thumbnails}
    data = store.get_bytes(file.bucket, file.key)
    rendered = render_thumbnails(data, THUMBNAIL_SIZES, max_pixels=max_pixels)
    keys: dict[str, str] = {}
    for size, blob in rendered.items():
        key = thumbnail_key(file_id, size)
        store.put_bytes(bucket, key, blob, content_type="image/webp")
        keys[str(size)] = key
    files_repo.set_thumbnails(session, file_id, keys)
    return {"file_id": str(file_id), "thumbnails": keys}
