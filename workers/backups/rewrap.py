"""Re-wrapping backup data keys after a master key rotation (`conveyor backups rewrap`).

Only the manifest's "key" member changes (the data key itself, the MAC and the digest stay),
so a rewrap never touches the data objects and never breaks a chain.
"""

from __future__ import annotations

import json

import structlog
from sqlalchemy.orm import Session

from shared.crypto import KeyRing
from shared.db.repos import backups as backups_repo
from shared.storage.base import ObjectStore
from workers.backups.manifest import open_document, rewrap

log = structlog.get_logger("backups")


def rewrap_backups(
    session: Session, store: ObjectStore, bucket: str, ring: KeyRing, *, limit: int
) -> int:
    """Re-wrap up to `limit` completed backups whose key is not the ring's current one."""
    done = 0
    for backup in backups_repo.needing_rewrap(session, ring.current_kid, limit=limit):
        if backup.manifest_key is None:
            continue
        document = json.loads(store.get_bytes(bucket, backup.manifest_key))
        open_document(document, ring)  # verify before rewriting anything
        fresh = rewrap(document, ring)
        store.put_bytes(bucket, backup.manifest_key, json.dumps(fresh).encode(), "application/json")
        backups_repo.set_manifest(session, backup.id, fresh, ring.current_kid)
        done += 1
    log.info("backups.rewrapped", count=done, kid=ring.current_kid)
    return done
