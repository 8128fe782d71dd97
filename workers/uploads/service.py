"""`upload.process`: check an uploaded object and file it, or refuse it with a reason.

Never trusts the declared size or type. The file row is keyed by the upload id, so a
redelivery after a crash finds the row and counts nothing twice. Never commits.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.orm import Session

from shared.db.models import StoredFile, Upload
from shared.db.repos import files as files_repo
from shared.jobs.submit import NewJob, submit_jobs
from shared.storage.base import ObjectNotFound, ObjectStore
from shared.storage.buckets import Bucket, file_key
from workers.uploads.detect import HEAD_BYTES, Allowed, Category, Verdict, classify
from workers.uploads.errors import Reason, Rejected
from workers.uploads.metadata import extract
from workers.uploads.policy import UploadPolicy
from workers.uploads.sanitize import extension_of, sanitize_filename
from workers.uploads.scanning import MalwareScanner
from workers.uploads.thumbnail_status import thumbnail_job_id

log = structlog.get_logger("uploads")


@dataclass(frozen=True)
class Source:
    bucket: str
    key: str
    size: int


def process_upload(
    session: Session,
    store: ObjectStore,
    policy: UploadPolicy,
    *,
    upload_id: uuid.UUID,
    user_id: str,
    now: datetime,
    scanner: MalwareScanner | None = None,
) -> dict[str, Any]:
    upload = files_repo.get_upload(session, upload_id)
    # Another user's upload is "not found" (its existence is not revealed) and left untouched.
    if upload is None or upload.user_id != user_id:
        raise Rejected(Reason.NOT_FOUND, "no such upload", upload_id=upload_id)
    incoming = policy.bucket(Bucket.INCOMING)
    existing = files_repo.get_file(session, upload_id)
    if existing is None:
        try:
            existing = _ingest(session, store, policy, upload, now, scanner)
        except Rejected as exc:
            store.delete(incoming, upload.incoming_key)
            # A redelivery may have found a copy filed before a crash: no row, so remove it too.
            for category in Category:
                store.delete(policy.bucket(Bucket(category.value)), file_key(upload.id))
            log.info("uploads.rejected", upload_id=str(upload_id), reason=exc.code)
            raise
    store.delete(incoming, upload.incoming_key)
    log.info("uploads.stored", upload_id=str(upload_id), category=existing.category)
    return _result(existing)


def _ingest(
    session: Session,
    store: ObjectStore,
    policy: UploadPolicy,
    upload: Upload,
    now: datetime,
    scanner: MalwareScanner | None,
) -> StoredFile:
    source = _locate(store, policy, upload)
    if source.size > policy.largest_limit:
        raise Rejected(Reason.TOO_LARGE, f"{source.size} bytes > {policy.largest_limit}")
    storage = files_repo.lock_storage(session, upload.user_id)
    if storage.bytes_used + source.size > policy.quota_bytes:
        raise Rejected(
            Reason.QUOTA_EXCEEDED,
            f"{storage.bytes_used} + {source.size} bytes > quota {policy.quota_bytes}",
        )
    data = store.get_bytes(source.bucket, source.key, max_bytes=policy.largest_limit + 1)
    if storage.bytes_used + len(data) > policy.quota_bytes:  # the object may have grown since stat
        raise Rejected(Reason.QUOTA_EXCEEDED, f"{len(data)} bytes read exceed the quota")
    if len(data) != upload.declared_size:  # the POST policy binds it; a lying client anyway
        raise Rejected(
            Reason.SIZE_MISMATCH, f"{len(data)} bytes uploaded, {upload.declared_size} declared"
        )
    name = sanitize_filename(upload.filename)
    allowed = _check_type(data, upload.declared_type, name)
    if len(data) > policy.limit_for(allowed.category):
        raise Rejected(Reason.TOO_LARGE, f"{len(data)} bytes > {allowed.category} limit")
    if scanner is not None and (signature := scanner.scan(data)):
        raise Rejected(Reason.MALWARE, f"malware found: {signature}", upload_id=upload.id)
    meta = extract(
        data,
        allowed.category,
        allowed.mime,
        max_pixels=policy.max_pixels,
        archives=policy.archives,
    )
    bucket, key = policy.bucket(Bucket(allowed.category.value)), file_key(upload.id)
    if (source.bucket, source.key) != (bucket, key):
        store.put_bytes(bucket, key, data, content_type=allowed.mime)
    row = {
        "id": upload.id,
        "user_id": upload.user_id,
        "api_key_id": upload.api_key_id,
        "name": name,
        "category": allowed.category.value,
        "content_type": allowed.mime,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bucket": bucket,
        "key": key,
        "meta": meta,
        "created_at": now,
    }
    if files_repo.insert_file(session, row):
        files_repo.add_usage(session, upload.user_id, size=len(data), files=1)
        if allowed.category is Category.IMAGES:
            payload = {"file_id": str(upload.id)}
            thumbnails = NewJob(
                "image.thumbnail", upload.user_id, payload, job_id=thumbnail_job_id(upload.id)
            )
            submit_jobs(session, [thumbnails], source="worker", now=now)
    stored = files_repo.get_file(session, upload.id)
    assert stored is not None
    return stored


def _locate(store: ObjectStore, policy: UploadPolicy, upload: Upload) -> Source:
    """The incoming object; after a crash between filing and commit, the filed copy."""
    candidates = [(policy.bucket(Bucket.INCOMING), upload.incoming_key)] + [
        (policy.bucket(Bucket(c.value)), file_key(upload.id)) for c in Category
    ]
    for bucket, key in candidates:
        try:
            info = store.stat(bucket, key)
        except ObjectNotFound:
            continue
        return Source(bucket, key, info.size)
    raise Rejected(Reason.NOT_UPLOADED, "nothing was uploaded", upload_id=upload.id)


def _check_type(data: bytes, declared_type: str, name: str) -> Allowed:
    found = classify(data[:HEAD_BYTES], declared_type=declared_type, extension=extension_of(name))
    if found.verdict is Verdict.NOT_ALLOWED or found.allowed is None:
        raise Rejected(Reason.TYPE_NOT_ALLOWED, f"content is {found.mime or 'unknown'}")
    if found.verdict is Verdict.MISMATCH:
        raise Rejected(
            Reason.TYPE_MISMATCH,
            f"content is {found.mime}, declared {declared_type!r} named {name!r}",
        )
    return found.allowed


def _result(file: StoredFile) -> dict[str, Any]:
    result: dict[str, Any] = {
        "file_id": str(file.id),
        "name": file.name,
        "category": file.category,
        "content_type": file.content_type,
        "size": file.size,
        "sha256": file.sha256,
    }
    if file.category == Category.IMAGES.value:
        result["thumbnail_job_id"] = str(thumbnail_job_id(file.id))
    return result
