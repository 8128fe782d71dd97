"""Which job makes a file's thumbnails, and what a client is told about them.

The `image.thumbnail` job of a file has a deterministic id (a UUIDv5 of the file id), so the
upload result can name it and `GET /v1/files/{id}` can tell "pending" from "failed" without
a search through job payloads. Pure: no I/O.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

Status = Literal["none", "pending", "ready", "failed"]

THUMBNAIL_JOBS = uuid.UUID("1b0f9d2e-4c8a-5e57-9a43-6f1d2c7b8e90")
FAILED_STATES = frozenset({"failed", "dead", "cancelled"})


def thumbnail_job_id(file_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(THUMBNAIL_JOBS, str(file_id))


@dataclass(frozen=True)
class ThumbnailStatus:
    status: Status
    job_id: uuid.UUID | None = None
    reason: str | None = None


def thumbnail_status(
    *,
    file_id: uuid.UUID,
    is_image: bool,
    has_thumbnails: bool,
    job_state: str | None,
    job_error: str | None,
) -> ThumbnailStatus:
    """`job_state` is None when no job has that id (files filed before ids were derived)."""
    if not is_image:
        return ThumbnailStatus("none")
    job_id = thumbnail_job_id(file_id) if job_state is not None else None
    if has_thumbnails:
        return ThumbnailStatus("ready", job_id)
    if job_state in FAILED_STATES:
        return ThumbnailStatus("failed", job_id, job_error or job_state)
    return ThumbnailStatus("pending", job_id)
