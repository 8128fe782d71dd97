"""Dramatiq glue for `export.create`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from shared.config import Settings, get_settings
from shared.jobs.catalog import EXPORT_CREATE
from shared.jobs.context import JobContext
from shared.jobs.payloads.exports import ExportPayload
from shared.messaging.actors import job_actor
from shared.storage.buckets import Bucket, bucket_name
from workers.exports import service


def export_config(settings: Settings) -> service.ExportConfig:
    key = settings.export_pseudonym_key
    return service.ExportConfig(
        database_url=settings.require_database_url(),
        bucket=bucket_name(settings.bucket_prefix, Bucket.EXPORTS),
        ttl=timedelta(seconds=settings.export_ttl_s),
        pseudonym_key=key.get_secret_value().encode() if key else None,
        pdf_max_rows=settings.export_pdf_max_rows,
    )


@job_actor(EXPORT_CREATE)
def create_export(ctx: JobContext, session: Session, payload: ExportPayload) -> dict[str, Any]:
    return service.create_export(
        session,
        ctx.store,
        export_config(get_settings()),
        export_id=payload.export_id,
        user_id=ctx.user_id,
        checkpoint=ctx.checkpoint,
        now=datetime.now(UTC),
    )
