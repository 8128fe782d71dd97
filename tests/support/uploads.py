"""Driving uploads end to end: presign, PUT to S3, complete, and look at what is left."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from shared.db.engine import session_scope
from shared.db.models import Job, StoredFile
from shared.db.repos import files as files_repo
from shared.embedded import EmbeddedS3
from shared.storage.base import ObjectNotFound
from shared.storage.buckets import THUMBNAIL_SIZES, Bucket, bucket_name, file_key, thumbnail_key
from tests.support.stack import Stack


def start_media_stack(logs: Path, s3: EmbeddedS3, *, threads: int = 2, **env: str) -> Stack:
    """A stack with a scheduler and one `media` worker process: what upload tests drive."""
    stack = Stack.create(logs, s3=s3)
    stack.start_scheduler()
    stack.start_worker("media", processes=1, threads=threads, **env)
    return stack


@dataclass(frozen=True)
class Uploaded:
    upload_id: str
    job_id: str


def upload(
    stack: Stack,
    user: str,
    filename: str,
    content_type: str,
    data: bytes,
    *,
    declared_size: int | None = None,
) -> Uploaded:
    """Declaring another size than `len(data)` plays a client that got past the S3 policy:
    the bytes go straight into the incoming bucket, and the worker must catch the lie."""
    size = len(data) if declared_size is None else declared_size
    body = {"user_id": user, "filename": filename, "content_type": content_type, "size": size}
    started = stack.client.post("/v1/uploads", json=body, headers=stack.headers())
    assert started.status_code == 201, started.text
    upload_id = started.json()["upload_id"]
    if size == len(data):
        sent = post_upload(started.json(), data)
        assert sent.status_code in (200, 201, 204), sent.text
    else:
        incoming = bucket_name(stack.bucket_prefix, Bucket.INCOMING)
        stack.store.put_bytes(incoming, f"uploads/{upload_id}", data, content_type)
    done = stack.client.post(f"/v1/uploads/{upload_id}/complete", headers=stack.headers())
    assert done.status_code == 202, done.text
    return Uploaded(upload_id, done.json()["job_id"])


def post_upload(started: dict[str, Any], data: bytes, **fields: str) -> httpx.Response:
    """What a client does with POST /v1/uploads' answer (form fields, then the file)."""
    form = {**started["fields"], **fields}
    return httpx.post(started["url"], data=form, files={"file": ("f", data)}, timeout=120)


def exists(stack: Stack, bucket: Bucket, key: str) -> bool:
    try:
        stack.store.stat(bucket_name(stack.bucket_prefix, bucket), key)
    except ObjectNotFound:
        return False
    return True


def leftovers(stack: Stack, upload_id: str) -> list[str]:
    """Every object an upload could have left behind."""
    places = [(Bucket.INCOMING, f"uploads/{upload_id}")]
    places += [(b, file_key(upload_id)) for b in Bucket]
    places += [(Bucket.IMAGES, thumbnail_key(upload_id, s)) for s in THUMBNAIL_SIZES]
    return [f"{b}/{k}" for b, k in places if exists(stack, b, k)]


def file_row(stack: Stack, file_id: str) -> StoredFile | None:
    with session_scope(stack.sessions) as session:
        return session.get(StoredFile, uuid.UUID(file_id))


def storage(stack: Stack, user: str) -> tuple[int, int]:
    with session_scope(stack.sessions) as session:
        row = files_repo.storage_of(session, user)  # the default tenant's (owner session)
        return (row.bytes_used, row.file_count) if row else (0, 0)


def jobs_for_file(stack: Stack, kind: str, file_id: str) -> list[Job]:
    with session_scope(stack.sessions) as session:
        query = select(Job).where(Job.kind == kind, Job.payload["file_id"].astext == file_id)
        return list(session.execute(query).scalars())


def get(stack: Stack, path: str) -> Any:
    response = stack.client.get(path, headers=stack.headers())
    assert response.status_code == 200, response.text
    return response.json()
