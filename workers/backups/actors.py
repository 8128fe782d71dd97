"""Dramatiq glue for `backup.create` and `backup.restore`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.db.engine import libpq_dsn
from shared.jobs.catalog import BACKUP_CREATE, BACKUP_RESTORE
from shared.jobs.context import JobContext
from shared.jobs.payloads.backups import CreateBackupPayload, RestoreBackupPayload
from shared.messaging.actors import job_actor
from shared.storage.buckets import Bucket, bucket_name
from workers.backups import restore, service


def deps_for(ctx: JobContext, session: Session) -> service.BackupDeps:
    settings = get_settings()
    return service.BackupDeps(
        store=ctx.store,
        bucket=bucket_name(settings.bucket_prefix, Bucket.BACKUPS),
        keys=settings.key_ring(),
        # The job's own database, whatever the process was configured with.
        dsn=libpq_dsn(session.get_bind().engine.url.render_as_string(hide_password=False)),
        zstd_level=settings.backup_zstd_level,
        chunk_size=settings.backup_chunk_bytes,
        part_size=settings.backup_part_bytes,
        batch_bytes=settings.backup_batch_bytes,
    )


@job_actor(BACKUP_CREATE)
def create_backup(
    ctx: JobContext, session: Session, payload: CreateBackupPayload
) -> dict[str, Any]:
    return service.create_backup(ctx, session, deps_for(ctx, session), backup_id=payload.backup_id)


@job_actor(BACKUP_RESTORE)
def restore_backup(
    ctx: JobContext, session: Session, payload: RestoreBackupPayload
) -> dict[str, Any]:
    return restore.restore_backup(
        ctx,
        session,
        deps_for(ctx, session),
        backup_id=payload.backup_id,
        mode=payload.mode,
        dry_run=payload.dry_run,
    )
