"""Deleting backups without breaking chains: by hand (DELETE) and by retention.

Rows go first, in their own committed transaction; objects after. A crash in between leaves
orphan objects (harmless: unreadable without their manifest row's chain), never a row whose
object is gone.
"""

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


def delete_rows(session: Session, backup_ids: list[uuid.UUID]) -> list[str]:
    """Delete the rows (children first); returns the object keys to delete after commit."""
    keys: list[str] = []
    for backup_id in backup_ids:
        row = backups_repo.get(session, backup_id)
        if row is not None:
            keys.extend(k for k in (row.manifest_key, row.object_key) if k)
    backups_repo.delete_many(session, backup_ids)
    session.flush()
    return keys


def delete_objects(store: ObjectStore, bucket: str, keys: list[str]) -> None:
    for key in keys:
        store.delete(bucket, key)
    log.info("backups.objects_deleted", count=len(keys))


def retention_plan(session: Session, user_id: uuid.UUID) -> list[uuid.UUID]:
    """What the user's `keep_last` lets go (nothing without settings)."""
    settings = backups_repo.get_settings(session, user_id)
    if settings is None:
        return []
    return prunable(nodes_of(session, user_id), settings.keep_last)
