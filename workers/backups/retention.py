"""Deleting backups without breaking chains: by hand (DELETE) and by retention."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.orm import Session

from shared.db.models import Backup
from shared.db.repos import backups as backups_repo
from shared.errors import PermanentError
from shared.storage.base import ObjectStore
from workers.backups.chain import Node, descendants, prunable

log = structlog.get_logger("backups")


class HasDependents(PermanentError):
    code = "backup_has_dependents"


def nodes_of(session: Session, user_id: uuid.UUID) -> dict[uuid.UUID, Node]:
    return {
        b.id: Node(b.id, b.parent_id, b.created_at, b.status == "completed")
        for b in backups_repo.of_user(session, user_id, limit=100_000)
    }


def plan_delete(session: Session, backup: Backup, *, chain: bool) -> list[uuid.UUID]:
    """`backup` and, with `chain`, every incremental built on it; children first."""
    doomed = descendants(backup.id, nodes_of(session, backup.user_id))
    if len(doomed) > 1 and not chain:
        raise HasDependents(
            f"{len(doomed) - 1} newer incremental(s) depend on this backup; "
            "delete the whole chain with ?chain=true",
            backup_id=backup.id,
        )
    return doomed


def delete_backups(
    session: Session, store: ObjectStore, bucket: str, backup_ids: list[uuid.UUID]
) -> None:
    """Rows first (the caller's transaction), then the objects: a crash in between leaves
    orphan objects (harmless, unreadable without their manifest row), never a row whose
    object is gone."""
    rows = [b for b in (backups_repo.get(session, i) for i in backup_ids) if b is not None]
    backups_repo.delete_many(session, backup_ids)
    session.flush()
    for row in rows:
        for key in (row.manifest_key, row.object_key):
            if key:
                store.delete(bucket, key)
    log.info("backups.deleted", count=len(rows))


def apply_retention(
    session: Session, store: ObjectStore, bucket: str, user_id: uuid.UUID, keep_last: int
) -> list[uuid.UUID]:
    doomed = prunable(nodes_of(session, user_id), keep_last)
    if doomed:
        delete_backups(session, store, bucket, doomed)
    return doomed
