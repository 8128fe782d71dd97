"""Dramatiq glue for `image.thumbnail`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.jobs.catalog import IMAGE_THUMBNAIL
from shared.jobs.context import JobContext
from shared.jobs.payloads.files import ThumbnailPayload
from shared.messaging.actors import job_actor
from shared.storage.buckets import Bucket, bucket_name
from workers.thumbnails import service
from workers.thumbnails.decoding import set_decode_concurrency


@job_actor(IMAGE_THUMBNAIL)
def generate_thumbnails(
    ctx: JobContext, session: Session, payload: ThumbnailPayload
) -> dict[str, Any]:
    settings = get_settings()
    set_decode_concurrency(settings.image_decode_concurrency)
    return service.generate_thumbnails(
        session,
        ctx.store,
        file_id=payload.file_id,
        user_id=ctx.user_id,
        bucket=bucket_name(settings.bucket_prefix, Bucket.IMAGES),
        max_pixels=settings.image_max_pixels,
    )
