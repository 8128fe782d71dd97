"""/v1/uploads and /v1/files: presigned uploads, processing, listing, download, delete.

The ingress never carries a file body: clients PUT straight to S3 with a short-lived URL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from shared.config import Settings
from shared.db.models import ApiKey, StoredFile, Upload
from shared.db.repos import audit as audit_repo
from shared.db.repos import files as files_repo
from shared.errors import ConveyorError, PermanentError
from shared.jobs.submit import NewJob, submit_jobs
from shared.storage.base import ObjectNotFound, ObjectStore
from shared.storage.buckets import Bucket, bucket_name, incoming_key
from workers.ingress.cursors import decode_cursor, encode_cursor
from workers.ingress.deps import ApiKeyDep, SessionDep, may_see
from workers.ingress.schemas_files import (
    CompleteOut,
    DeleteOut,
    FileOut,
    FilePage,
    StorageOut,
    UploadIn,
    UploadOut,
)
from workers.uploads.detect import WHITELIST, normalize_type
from workers.uploads.thumbnail_status import ThumbnailStatus, thumbnail_job_id, thumbnail_status

router = APIRouter(tags=["files"])


class NotFound(ConveyorError):
    code = "not_found"


class NotUploaded(ConveyorError):
    code = "not_uploaded"


class StorageUnavailable(ConveyorError):
    code = "storage_unavailable"


def object_store(request: Request) -> ObjectStore:
    store: ObjectStore | None = request.app.state.store
    if store is None:
        raise StorageUnavailable("no object store configured (CONVEYOR_S3_*)")
    return store


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


StoreDep = Annotated[ObjectStore, Depends(object_store)]
SettingsDep = Annotated[Settings, Depends(settings_of)]


def _visible_upload(session: SessionDep, key: ApiKey, upload_id: uuid.UUID) -> Upload:
    upload = files_repo.get_upload(session, upload_id)
    if upload is None or not may_see(key, upload):
        raise NotFound("no such upload", upload_id=upload_id)
    return upload


def _visible_file(session: SessionDep, key: ApiKey, file_id: uuid.UUID) -> StoredFile:
    file = files_repo.get_file(session, file_id)
    hidden = file is None or not may_see(key, file)
    if file is None or hidden or file.deleted_at is not None:
        raise NotFound("no such file", file_id=file_id)
    return file


@router.post("/v1/uploads", status_code=201, response_model=UploadOut)
def start_upload(
    body: UploadIn, session: SessionDep, key: ApiKeyDep, store: StoreDep, settings: SettingsDep
) -> UploadOut:
    if normalize_type(body.content_type) not in WHITELIST:  # before any byte is sent
        raise PermanentError(
            f"content_type {body.content_type!r} is not accepted", code="type_not_allowed"
        )
    largest = max([settings.upload_max_bytes, *settings.upload_category_max_bytes.values()])
    if body.size > largest:  # a courtesy: the worker checks the real object again
        raise PermanentError(f"declared size {body.size} > {largest}", code="too_large")
    used = files_repo.storage_of(session, body.user_id)
    if used is not None and used.bytes_used + body.size > settings.user_quota_bytes:
        raise PermanentError(  # again a courtesy: the worker checks under the user's lock
            f"{used.bytes_used} bytes stored + {body.size} > quota {settings.user_quota_bytes}",
            code="quota_exceeded",
        )
    upload_id = uuid.uuid4()
    upload = Upload(
        id=upload_id,
        user_id=body.user_id,
        api_key_id=key.id,
        filename=body.filename,  # NUL was refused (422) by workers/ingress/input_guard.py
        declared_type=body.content_type,
        declared_size=body.size,
        incoming_key=incoming_key(upload_id),
    )
    files_repo.add_upload(session, upload)
    ttl = timedelta(seconds=settings.upload_url_ttl_s)
    bucket = bucket_name(settings.bucket_prefix, Bucket.INCOMING)
    # The store refuses another size or type (S3 POST policy); the worker checks both again.
    post = store.presigned_post(
        bucket, upload.incoming_key, ttl, content_type=body.content_type, size=body.size
    )
    return UploadOut(
        upload_id=upload_id, url=post.url, fields=post.fields, expires_at=datetime.now(UTC) + ttl
    )


@router.post("/v1/uploads/{upload_id:uuid}/complete", status_code=202, response_model=CompleteOut)
def complete_upload(
    upload_id: uuid.UUID,
    session: SessionDep,
    key: ApiKeyDep,
    store: StoreDep,
    settings: SettingsDep,
) -> CompleteOut:
    upload = _visible_upload(session, key, upload_id)
    if upload.job_id is None:  # completing twice returns the first job
        _require_uploaded(store, settings, upload)
        new = NewJob("upload.process", upload.user_id, {"upload_id": str(upload.id)})
        [outcome] = submit_jobs(session, [new], source="ingress", api_key_id=key.id)
        upload.job_id = outcome.job_id
    return CompleteOut(upload_id=upload.id, job_id=upload.job_id)


def _require_uploaded(store: ObjectStore, settings: Settings, upload: Upload) -> None:
    """No job before the bytes are there: a 409 the client can retry after its PUT finishes."""
    try:
        store.stat(bucket_name(settings.bucket_prefix, Bucket.INCOMING), upload.incoming_key)
    except ObjectNotFound:
        raise NotUploaded(
            "the object is not uploaded yet: finish the upload (POST), then call complete again",
            upload_id=upload.id,
        ) from None


@router.get("/v1/files", response_model=FilePage)
def list_files(
    session: SessionDep,
    key: ApiKeyDep,
    user_id: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> FilePage:
    files = files_repo.list_files(
        session,
        user_id,
        api_key_id=None if key.is_admin else key.id,
        limit=limit,
        after=decode_cursor(cursor) if cursor else None,
    )
    statuses = _thumbnail_statuses(session, files)
    next_cursor = encode_cursor(files[-1].created_at, files[-1].id) if len(files) == limit else None
    return FilePage(files=[FileOut.of(f, statuses[f.id]) for f in files], next_cursor=next_cursor)


def _thumbnail_statuses(
    session: SessionDep, files: list[StoredFile]
) -> dict[uuid.UUID, ThumbnailStatus]:
    jobs = files_repo.job_states(session, [thumbnail_job_id(f.id) for f in files])
    out = {}
    for f in files:
        state, error = jobs.get(thumbnail_job_id(f.id), (None, None))
        out[f.id] = thumbnail_status(
            file_id=f.id,
            is_image=f.category == "images",
            has_thumbnails=bool(f.thumbnails),
            job_state=state,
            job_error=error,
        )
    return out


@router.get("/v1/files/{file_id:uuid}", response_model=FileOut)
def get_file(
    file_id: uuid.UUID, session: SessionDep, key: ApiKeyDep, store: StoreDep, settings: SettingsDep
) -> FileOut:
    file = _visible_file(session, key, file_id)
    ttl = timedelta(seconds=settings.download_url_ttl_s)
    images = bucket_name(settings.bucket_prefix, Bucket.IMAGES)
    thumbs = {s: store.presigned_get(images, k, ttl) for s, k in (file.thumbnails or {}).items()}
    return FileOut.of(
        file,
        _thumbnail_statuses(session, [file])[file.id],
        download_url=store.presigned_get(file.bucket, file.key, ttl),
        thumbnail_urls=thumbs or None,
    )


@router.delete("/v1/files/{file_id:uuid}", status_code=202, response_model=DeleteOut)
def delete_file(file_id: uuid.UUID, session: SessionDep, key: ApiKeyDep) -> DeleteOut:
    file = _visible_file(session, key, file_id)
    new = NewJob(
        "file.delete",
        file.user_id,
        {"file_id": str(file.id)},
        idempotency_key=f"file.delete:{file.id}",
    )
    [outcome] = submit_jobs(session, [new], source="ingress", api_key_id=key.id)
    if outcome.created:  # a repeated DELETE answers with the same job and records nothing
        audit_repo.record(
            session,
            action="file.delete_requested",
            target=f"file:{file.id}",
            actor="api",
            key=key,
            user_id=file.user_id,
            job_id=str(outcome.job_id),
        )
    return DeleteOut(file_id=file.id, job_id=outcome.job_id)


@router.get("/v1/users/{user_id}/storage", response_model=StorageOut)
def storage(user_id: str, session: SessionDep, key: ApiKeyDep, settings: SettingsDep) -> StorageOut:
    del key  # any valid key may read totals (they reveal no content)
    row = files_repo.storage_of(session, user_id)
    return StorageOut(
        user_id=user_id,
        bytes_used=row.bytes_used if row else 0,
        file_count=row.file_count if row else 0,
        quota_bytes=settings.user_quota_bytes,
    )
