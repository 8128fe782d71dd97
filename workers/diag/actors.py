"""Dramatiq glue for the diag kinds."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.jobs.catalog import DIAG_NOOP
from shared.jobs.context import JobContext
from shared.jobs.payloads.diag import NoopPayload
from shared.messaging.actors import job_actor
from shared.storage.buckets import Bucket, bucket_name
from workers.diag import service


@job_actor(DIAG_NOOP)
def noop(ctx: JobContext, session: Session, payload: NoopPayload) -> dict[str, Any]:
    settings = get_settings()
    return service.noop(
        ctx,
        session,
        payload,
        trace_path=settings.diag_trace_path,
        bucket=bucket_name(settings.bucket_prefix, Bucket.DIAG),
    )
