"""The scheduler's sync chore: forget what no device can need any more.

- field registers of entities deleted longer ago than tombstone retention, and stored batch
  results of that age (`sync_repo.prune`: a device that old gets a full resync anyway);
- conflict-log entries older than `CONVEYOR_SYNC_CONFLICT_RETENTION_S` (0 keeps them);
- uploaded batches and delta objects in the `sync` bucket older than
  `CONVEYOR_SYNC_OBJECT_RETENTION_S`: by then their job has long run and the device has
  fetched its delta (a result asked for later still answers, without its delta object).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.repos import sync as sync_repo
from shared.storage.base import ObjectStore
from workers.sync.service import sync_bucket

log = structlog.get_logger("sync")

OBJECT_PREFIXES = ("batches/", "deltas/")


@dataclass(frozen=True)
class PruneRules:
    tombstone_retention: timedelta
    conflict_retention: timedelta | None  # None: the conflict log is kept forever
    object_retention: timedelta
    bucket: str

    @classmethod
    def from_settings(cls, settings: Settings) -> PruneRules:
        conflicts = settings.sync_conflict_retention_s
        return cls(
            tombstone_retention=timedelta(seconds=settings.sync_tombstone_retention_s),
            conflict_retention=timedelta(seconds=conflicts) if conflicts > 0 else None,
            object_retention=timedelta(seconds=settings.sync_object_retention_s),
            bucket=sync_bucket(settings),
        )


def prune_objects(store: ObjectStore, bucket: str, cutoff: datetime) -> int:
    """Delete uploaded batches and delta objects last written before `cutoff`."""
    deleted = 0
    for prefix in OBJECT_PREFIXES:
        for item in store.list_objects(bucket, prefix):
            if item.last_modified < cutoff:
                store.delete(bucket, item.key)
                deleted += 1
    return deleted


def prune_once(
    sessions: sessionmaker[Session],
    store: ObjectStore | None,
    rules: PruneRules,
    *,
    now: datetime,
) -> dict[str, int]:
    with session_scope(sessions) as session:
        counts = sync_repo.prune(session, now - rules.tombstone_retention)
    if rules.conflict_retention is not None:
        with session_scope(sessions) as session:
            cutoff = now - rules.conflict_retention
            counts["conflicts"] = sync_repo.prune_conflicts(session, cutoff)
    if store is not None:
        counts["objects"] = prune_objects(store, rules.bucket, now - rules.object_retention)
    log.info("sync.pruned", **counts)
    return counts


def make_prune(settings: Settings) -> Callable[[sessionmaker[Session]], None]:
    """What the scheduler runs every `CONVEYOR_SYNC_PRUNE_EVERY_S`."""
    rules = PruneRules.from_settings(settings)
    store: ObjectStore | None = None
    if settings.s3_endpoint:
        from shared.storage.s3 import S3Store

        store = S3Store.from_settings(settings)

    def prune(sessions: sessionmaker[Session]) -> None:
        prune_once(sessions, store, rules, now=datetime.now(UTC))

    return prune
