"""Dramatiq glue for `upload.process` and `file.delete`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.jobs.catalog import FILE_DELETE, UPLOAD_PROCESS
from shared.jobs.context import JobContext
from shared.jobs.payloads.files import DeleteFilePayload, ProcessUploadPayload
from shared.messaging.actors import job_actor
from workers.uploads import deletion, service
from workers.uploads.policy import UploadPolicy
from workers.uploads.scanning import scanner_from_settings


@job_actor(UPLOAD_PROCESS)
def process_upload(
    ctx: JobContext, session: Session, payload: ProcessUploadPayload
) -> dict[str, Any]:
    settings = get_settings()
    policy = UploadPolicy.from_settings(settings)
    return service.process_upload(
        session,
        ctx.store,
        policy,
        upload_id=payload.upload_id,
        user_id=ctx.user_id,
        now=datetime.now(UTC),
        scanner=scanner_from_settings(settings),
    )


@job_actor(FILE_DELETE)
def delete_file(ctx: JobContext, session: Session, payload: DeleteFilePayload) -> dict[str, Any]:
    policy = UploadPolicy.from_settings(get_settings())
    now = datetime.now(UTC)
    return deletion.delete_file(
        session, ctx.store, policy, file_id=payload.file_id, user_id=ctx.user_id, now=now
    )
