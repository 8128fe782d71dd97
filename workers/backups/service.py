"""`backup.create`: one consistent snapshot of a user's rows → one sealed object in S3.

Order of events, each step safe to repeat: take the user's lock (held by the job's own
transaction until its outcome commits) → open a REPEATABLE READ snapshot and take the
high-water mark in it → stream every table through Arrow IPC, zstd and AES-GCM into a
multipart upload (invisible until complete) → write the sealed manifest → mark the row
`completed` in the job's transaction. A crash anywhere before that commit leaves the row
`pending`; the retry starts over with a fresh data key and overwrites the same keys.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, cast

import structlog
from sqlalchemy.orm import Session

from shared.crypto import KeyRing
from shared.db.models import Backup
from shared.db.repos import backup_data as data_repo
from shared.db.repos import backups as backups_repo
from shared.db.repos.changes import safe_watermark
from shared.errors import PermanentError, TransientError
from shared.jobs.context import JobContext
from shared.storage.base import ObjectStore
from workers.backups import retention
from workers.backups.chunks import CHUNK_SIZE
from workers.backups.manifest import Manifest, Segment, chunk_key, seal
from workers.backups.pipeline import IterReader, SegmentStats, seal_tables
from workers.backups.tables import BY_NAME, normalize

log = structlog.get_logger("backups")


@dataclass(frozen=True)
class BackupDeps:
    store: ObjectStore
    bucket: str
    keys: KeyRing
    dsn: str  # libpq URI of the job's database, for the ADBC (Arrow) connections
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    zstd_level: int = 3
    chunk_size: int = CHUNK_SIZE
    part_size: int = 16 * 1024 * 1024
    batch_bytes: int = 8 * 1024 * 1024


def object_keys(user_id: uuid.UUID, backup_id: uuid.UUID) -> tuple[str, str]:
    base = f"users/{user_id}/{backup_id}"
    return f"{base}.cbk", f"{base}.manifest.json"


def table_refs(data_types: list[str]) -> list[data_repo.TableRef]:
    return [
        data_repo.TableRef(name, BY_NAME[name].owner, BY_NAME[name].key)
        for name in normalize(data_types)
    ]


class Progress:
    """Rows done of rows planned, recorded at each batch (also where cancel is honoured);
    the message also says how many stored (encrypted) bytes were written or read."""

    def __init__(self, ctx: JobContext, total: int, verb: str) -> None:
        self.ctx, self.total, self.verb, self.done = ctx, max(total, 1), verb, 0

    def rows(self, table: str, count: int, stored_bytes: int) -> None:
        self.done += count
        self.ctx.checkpoint(
            self.done / self.total,
            f"{self.verb} {table}: {self.done} rows, {stored_bytes} bytes",
        )


def summary(backup: Backup) -> dict[str, Any]:
    return {
        "backup_id": str(backup.id),
        "type": backup.type,
        "parent_id": str(backup.parent_id) if backup.parent_id else None,
        "row_counts": backup.row_counts,
        "plain_bytes": backup.plain_bytes,
        "stored_bytes": backup.stored_bytes,
        "high_water_mark": backup.high_water_mark.isoformat() if backup.high_water_mark else None,
    }


def lock_user(session: Session, user_id: uuid.UUID, *, wait_s: float = 60) -> None:
    if not data_repo.lock_user(session, user_id, wait_s=wait_s):
        raise TransientError(
            "another backup or restore of this user is still running",
            retry_after=30,
            user_id=user_id,
        )


def create_backup(
    ctx: JobContext, session: Session, deps: BackupDeps, *, backup_id: uuid.UUID
) -> dict[str, Any]:
    backup = backups_repo.get(session, backup_id)
    if backup is None or str(backup.user_id) != ctx.user_id:  # another user's: "not found"
        raise PermanentError("no such backup", code="not_found", backup_id=backup_id)
    if backup.status == "completed":  # redelivered after success
        return summary(backup)
    lock_user(session, backup.user_id)
    parent = None
    if backup.requested_type == "incremental":
        parent = backups_repo.latest_completed(session, backup.user_id, backup.data_types)
    with ctx.sessions() as snap:
        snap.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        fields = _write_object(ctx, snap, deps, backup, parent)
        snap.rollback()
    if backup.scheduled:
        _apply_retention(ctx, deps, backup.user_id)
    backups_repo.complete(session, backup_id, completed_at=deps.clock(), **fields)
    session.refresh(backup)
    log.info(
        "backups.created",
        backup_id=str(backup_id),
        type=backup.type,
        rows=sum((backup.row_counts or {}).values()),
        stored_bytes=backup.stored_bytes,
    )
    return summary(backup)


def _apply_retention(ctx: JobContext, deps: BackupDeps, user_id: uuid.UUID) -> None:
    """Prune what `keep_last` lets go: rows committed first, then objects. Runs before this
    backup completes, so it counts the previous points only (one extra kept until next run)."""
    with ctx.sessions() as session, session.begin():
        keys = retention.delete_rows(session, retention.retention_plan(session, user_id))
    retention.delete_objects(deps.store, deps.bucket, keys)


def _write_object(
    ctx: JobContext, snap: Session, deps: BackupDeps, backup: Backup, parent: Backup | None
) -> dict[str, Any]:
    """Stream the snapshot's rows into S3; returns the row's new fields (manifest included)."""
    since = parent.high_water_mark if parent is not None else None
    mark = safe_watermark(snap)  # first statement: the snapshot is taken here
    data_key = os.urandom(32)
    object_key, manifest_key = object_keys(backup.user_id, backup.id)
    segments, size = _upload(ctx, snap, deps, backup, since, chunk_key(data_key), object_key)
    manifest = Manifest(
        backup_id=backup.id,
        user_id=backup.user_id,
        type="incremental" if parent is not None else "full",
        data_types=normalize(backup.data_types),
        parent_id=parent.id if parent is not None else None,
        parent_digest=parent.manifest_digest if parent is not None else None,
        since=since.isoformat() if since is not None else None,
        high_water_mark=mark.isoformat(),
        created_at=deps.clock().isoformat(),
        chunk_size=deps.chunk_size,
        object_bytes=size,
        segments=segments,
    )
    document = seal(manifest, data_key, deps.keys)
    deps.store.put_bytes(
        deps.bucket, manifest_key, json.dumps(document).encode(), "application/json"
    )
    return {
        "type": manifest.type,
        "parent_id": manifest.parent_id,
        "since": since,
        "high_water_mark": mark,
        "row_counts": {s.table: s.rows for s in segments},
        "plain_bytes": sum(s.plain_bytes for s in segments),
        "stored_bytes": size,
        "manifest_digest": manifest.digest(),
        "manifest": document,
        "key_id": document["key"]["kid"],
        "object_key": object_key,
        "manifest_key": manifest_key,
    }


def _upload(
    ctx: JobContext,
    snap: Session,
    deps: BackupDeps,
    backup: Backup,
    since: datetime | None,
    key: bytes,
    object_key: str,
) -> tuple[list[Segment], int]:
    """The data object, read through the exported snapshot; its segments and size."""
    refs = table_refs(backup.data_types)
    snapshot_id = data_repo.export_snapshot(snap)
    counts = data_repo.count_rows(snap, refs, backup.user_id, since)
    progress = Progress(ctx, sum(counts.values()), "backed up")
    stats: list[SegmentStats] = []
    with data_repo.snapshot_reader(deps.dsn, snapshot_id, deps.batch_bytes) as cursor:
        sources = (
            (ref.name, data_repo.read_table(cursor, ref, backup.user_id, since)) for ref in refs
        )
        body = seal_tables(
            sources,
            key=key,
            backup_id=backup.id,
            stats=stats,
            on_batch=progress.rows,
            level=deps.zstd_level,
            chunk_size=deps.chunk_size,
        )
        info = deps.store.put_stream(
            deps.bucket, object_key, cast(BinaryIO, IterReader(body)), part_size=deps.part_size
        )
    segments = [s.segment() for s in stats]
    sealed = sum(s.length for s in segments)
    if info.size != sealed:
        raise TransientError(f"uploaded {info.size} bytes, sealed {sealed}")
    return segments, info.size
