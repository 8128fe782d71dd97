"""Remove incoming objects no pending upload needs: abandoned (never completed), orphaned
(no upload row), or written after the upload was processed (a replayed presigned POST).

An object whose processing job is still queued or running is kept however old it is. Run
by the scheduler every `CONVEYOR_INCOMING_SWEEP_INTERVAL_S`; `conveyor migrate` also sets an
S3 lifecycle rule as a backstop for when no scheduler runs (docs/uploads.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.repos import files as files_repo
from shared.db.repos.limits import UNFINISHED
from shared.storage.base import ListedObject, ObjectStore
from shared.storage.buckets import Bucket, bucket_name

log = structlog.get_logger("uploads")

PREFIX = "uploads/"
# The lifecycle backstop: S3 counts in days, and must not race a long queue.
INCOMING_EXPIRY_DAYS = 2


def _upload_id(obj: ListedObject) -> uuid.UUID | None:
    try:
        return uuid.UUID(obj.key.removeprefix(PREFIX))
    except ValueError:
        return None


def doomed(
    objects: list[ListedObject],
    states: dict[uuid.UUID, str | None],
    *,
    now: datetime,
    grace: timedelta,
) -> list[str]:
    """Keys to delete. Pure: `states` maps upload id → its job's state (None: no job yet);
    an id missing from it has no upload row."""
    out = []
    for obj in objects:
        upload_id = _upload_id(obj)
        old = now - obj.last_modified >= grace
        if upload_id is None or upload_id not in states:
            keep = not old  # orphan: give a just-created row's commit time to land
        elif (state := states[upload_id]) is None:
            keep = not old  # abandoned once the grace period is over
        else:
            keep = state in UNFINISHED  # processed (or refused): nothing will read it again
        if not keep:
            out.append(obj.key)
    return out


def sweep_once(
    session: Session, store: ObjectStore, bucket: str, *, now: datetime, grace: timedelta
) -> int:
    objects = list(store.list_objects(bucket, PREFIX))
    ids = [i for i in (_upload_id(o) for o in objects) if i is not None]
    states = files_repo.upload_job_states(session, ids) if ids else {}
    keys = doomed(objects, states, now=now, grace=grace)
    for key in keys:
        store.delete(bucket, key)
    if keys:
        log.info("uploads.incoming_swept", deleted=len(keys), seen=len(objects))
    return len(keys)


def make_sweep(settings: Settings) -> Callable[[sessionmaker[Session]], None] | None:
    """The scheduler's chore, or None without S3 or with the sweep disabled."""
    if not settings.s3_endpoint or settings.incoming_sweep_interval_s <= 0:
        return None
    from shared.storage.s3 import S3Store

    store = S3Store.from_settings(settings)
    bucket = bucket_name(settings.bucket_prefix, Bucket.INCOMING)
    grace = timedelta(seconds=settings.incoming_grace_s)

    def sweep(sessions: sessionmaker[Session]) -> None:
        with session_scope(sessions) as session:
            sweep_once(session, store, bucket, now=datetime.now(UTC), grace=grace)

    return sweep
