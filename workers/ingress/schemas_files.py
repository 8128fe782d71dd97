"""Request and response bodies of /v1/uploads and /v1/files."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from shared.db.models import StoredFile
from workers.ingress.schemas import JsonInt
from workers.uploads.detect import WHITELIST
from workers.uploads.thumbnail_status import Status, ThumbnailStatus


class UploadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=200)
    filename: str = Field(min_length=1, max_length=1024)
    # Checked against the whitelist by the route (aliases and parameters are normalized, so
    # `image/jpg; q=1` passes too); OpenAPI lists the canonical types.
    content_type: str = Field(
        min_length=1,
        max_length=255,
        json_schema_extra=lambda schema: schema.update(enum=list[JsonValue](sorted(WHITELIST))),
    )
    size: JsonInt = Field(ge=1)


class UploadOut(BaseModel):
    """POST `fields`, then the file as form field `file` (last), as multipart/form-data to
    `url`. S3 refuses any other size than the declared one, or another content type."""

    upload_id: uuid.UUID
    method: str = "POST"
    url: str
    fields: dict[str, str]
    expires_at: datetime


class CompleteOut(BaseModel):
    upload_id: uuid.UUID
    job_id: uuid.UUID


class ThumbnailsOut(BaseModel):
    status: Status
    job_id: uuid.UUID | None = None
    reason: str | None = None  # the thumbnail job's error code when failed (e.g. corrupt)


class FileOut(BaseModel):
    id: uuid.UUID
    user_id: str
    name: str
    category: str
    content_type: str
    size: int
    sha256: str
    metadata: dict[str, Any]
    created_at: datetime
    thumbnails: ThumbnailsOut
    download_url: str | None = None
    thumbnail_urls: dict[str, str] | None = None

    @classmethod
    def of(cls, file: StoredFile, thumbnails: ThumbnailStatus, **urls: Any) -> FileOut:
        return cls(
            id=file.id,
            user_id=file.user_id,
            name=file.name,
            category=file.category,
            content_type=file.content_type,
            size=file.size,
            sha256=file.sha256,
            metadata=file.meta,
            created_at=file.created_at,
            thumbnails=ThumbnailsOut(
                status=thumbnails.status, job_id=thumbnails.job_id, reason=thumbnails.reason
            ),
            **urls,
        )


class FilePage(BaseModel):
    files: list[FileOut]
    next_cursor: str | None = None


class StorageOut(BaseModel):
    user_id: str
    bytes_used: int
    file_count: int
    quota_bytes: int


class DeleteOut(BaseModel):
    file_id: uuid.UUID
    job_id: uuid.UUID
