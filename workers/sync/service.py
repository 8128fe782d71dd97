"""`device.sync`: authenticate the device, merge its batch, answer with a delta and a cursor.

Syncs of one user are serialized by locking the user's `sync_settings` row for the whole
transaction. The result is stored under (device, batch id) in the same transaction, so a batch
that arrives again (client retry, another job for the same batch) gets the same answer without
merging twice. Never commits: the job's session scope does.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db.models import SyncDevice, SyncSettings
from shared.db.repos import sync as sync_repo
from shared.db.repos.changes import safe_watermark
from shared.errors import PermanentError
from shared.jobs.payloads.sync import DeviceSyncPayload
from shared.storage.base import ObjectNotFound, ObjectStore
from shared.storage.buckets import Bucket, bucket_name
from workers.sync import build_delta
from workers.sync.apply_batch import MergeContext, Outcome, merge_batch
from workers.sync.batch import ClockRule, Rejection, parse_batch
from workers.sync.cursor import Cursor, CursorKeys, InvalidCursor, decode, plan
from workers.sync.hlc import SERVER_NODE, Hlc, receive
from workers.sync.rows import datetime_to_ms

log = structlog.get_logger("sync")


@dataclass(frozen=True)
class SyncPolicy:
    bucket: str
    cursor_keys: CursorKeys
    max_skew_ms: int = 300_000
    retention: timedelta = timedelta(days=30)
    inline_max_bytes: int = 65_536
    delta_url_ttl: timedelta = timedelta(hours=1)
    max_batch_bytes: int = 64 * 1024 * 1024
    max_batch_changes: int = 100_000
    default_interval_s: int = 300
    page_rows: int = 5_000  # rows scanned per delta page

    @classmethod
    def from_settings(cls, settings: Settings) -> SyncPolicy:
        return cls(
            bucket=sync_bucket(settings),
            cursor_keys=CursorKeys.from_ring(settings.key_ring()),
            max_skew_ms=int(settings.sync_max_clock_skew_s * 1000),
            retention=timedelta(seconds=settings.sync_tombstone_retention_s),
            inline_max_bytes=settings.sync_inline_delta_max_bytes,
            delta_url_ttl=timedelta(seconds=settings.sync_delta_url_ttl_s),
            max_batch_bytes=settings.sync_max_batch_bytes,
            max_batch_changes=settings.sync_max_batch_changes,
            default_interval_s=settings.sync_default_interval_s,
            page_rows=settings.sync_delta_page_entities,
        )


def sync_bucket(settings: Settings) -> str:
    return bucket_name(settings.bucket_prefix, Bucket.SYNC)


def batch_key(device_id: uuid.UUID, batch_id: uuid.UUID) -> str:
    return f"batches/{device_id}/{batch_id}.json"


def delta_key(device_id: uuid.UUID, batch_id: uuid.UUID) -> str:
    return f"deltas/{device_id}/{batch_id}.json"


def active_device(session: Session, device_id: uuid.UUID, user_id: str) -> SyncDevice:
    """The device, if it may sync for `user_id`; a PermanentError with the reason otherwise."""
    device = sync_repo.get_device(session, device_id)
    if device is None:
        raise PermanentError("no such device", code="device_not_found", device_id=device_id)
    if device.revoked_at is not None:
        raise PermanentError("device was revoked", code="device_revoked", device_id=device_id)
    if str(device.user_id) != user_id:
        # Same answer as a missing device: another user's device is not revealed.
        raise PermanentError("no such device", code="device_not_found", device_id=device_id)
    return device


def sync_device(
    session: Session,
    store: Callable[[], ObjectStore],
    policy: SyncPolicy,
    *,
    user_id: str,
    payload: DeviceSyncPayload,
) -> dict[str, Any]:
    device = active_device(session, payload.device_id, user_id)
    settings = sync_repo.lock_user(session, device.user_id, interval_s=policy.default_interval_s)
    batch = sync_repo.get_batch(session, device.id, payload.batch_id)
    if batch is not None and batch.result is not None:  # the same batch again: same answer
        log.info("sync.replayed", device_id=str(device.id), batch_id=str(payload.batch_id))
        return batch.result
    staged = batch.changes if batch is not None else None
    result = _sync(session, store, policy, device, settings, payload, staged)
    sync_repo.save_batch_result(session, device.id, payload.batch_id, result)
    log.info(
        "sync.synced",
        device_id=str(device.id),
        applied=result["applied"],
        rejected=len(result["rejected"]),
        conflicts=result["conflicts"],
        entities=result["entity_count"],
        full_resync=result["full_resync"],
    )
    return result


def _sync(
    session: Session,
    store: Callable[[], ObjectStore],
    policy: SyncPolicy,
    device: SyncDevice,
    settings: SyncSettings,
    payload: DeviceSyncPayload,
    staged: list[Any] | None,
) -> dict[str, Any]:
    now = sync_repo.transaction_time(session)
    cursor = _cursor(payload.cursor, device.user_id, policy.cursor_keys)
    raw = _raw_changes(store, policy, device.id, payload, staged)
    clock = ClockRule(now_ms=datetime_to_ms(now), max_skew_ms=policy.max_skew_ms)
    changes, rejected = parse_batch(raw, node=str(device.id), enabled=settings.types, clock=clock)
    scope = plan(cursor, now=now, retention=policy.retention)
    seen_until = scope.since if scope.start is not None else _seen(cursor)
    outcome = merge_batch(
        session, MergeContext(device.user_id, device.id, now, seen_until), changes
    )
    sync_repo.add_conflicts(session, outcome.conflicts)
    server_hlc = _advance_clock(settings, now, outcome.newest)
    # Before reading (see shared/db/repos/changes.py); a paged delta keeps its first page's.
    watermark = scope.watermark or safe_watermark(session)
    unwritten = {t: ids - outcome.written.get(t, set()) for t, ids in outcome.touched.items()}
    request = build_delta.DeltaRequest(
        device.user_id, str(device.id), scope.since, now, settings.types, unwritten
    )
    page = build_delta.Page(policy.page_rows, scope.start)
    entities = build_delta.build(session, request, page)
    delta = _place_delta(store, policy, device.id, payload.batch_id, entities)
    sync_repo.touch_device(session, device.id, now)
    next_cursor = Cursor(str(device.user_id), watermark, page.next)
    return {
        "batch_id": str(payload.batch_id),
        "cursor": next_cursor.encode(policy.cursor_keys),
        "more": page.next is not None,
        "full_resync": scope.full_resync,
        "server_hlc": server_hlc.wire(),
        "server_time_ms": clock.now_ms,
        "settings": {"types": list(settings.types), "interval_s": settings.interval_s},
        **_summary(outcome, rejected),
        **delta,
    }


def _seen(cursor: Cursor | None) -> datetime | None:
    return cursor.watermark if cursor is not None else None


def _cursor(text: str | None, user_id: uuid.UUID, keys: CursorKeys) -> Cursor | None:
    if text is None:
        return None
    try:
        return decode(text, user_id=str(user_id), keys=keys)
    except InvalidCursor as exc:
        raise PermanentError(str(exc), code="invalid_cursor") from None


def _raw_changes(
    store: Callable[[], ObjectStore],
    policy: SyncPolicy,
    device_id: uuid.UUID,
    payload: DeviceSyncPayload,
    staged: list[Any] | None,
) -> list[Any]:
    if payload.uploaded:
        changes = _uploaded(store(), policy, batch_key(device_id, payload.batch_id))
    elif staged is not None:
        changes = staged
    else:
        raise PermanentError("no changes were staged for this batch", code="batch_not_found")
    if len(changes) > policy.max_batch_changes:
        raise PermanentError(
            f"{len(changes)} changes > {policy.max_batch_changes}", code="batch_too_large"
        )
    return changes


def _uploaded(store: ObjectStore, policy: SyncPolicy, key: str) -> list[Any]:
    try:
        data = store.get_bytes(policy.bucket, key, max_bytes=policy.max_batch_bytes + 1)
    except ObjectNotFound:
        raise PermanentError("the batch was not uploaded", code="batch_not_uploaded") from None
    if len(data) > policy.max_batch_bytes:
        raise PermanentError(f"batch > {policy.max_batch_bytes} bytes", code="batch_too_large")
    try:
        body = json.loads(data)
    except ValueError:
        raise PermanentError("uploaded batch is not JSON", code="invalid_batch") from None
    changes = body.get("changes") if isinstance(body, dict) else None
    if not isinstance(changes, list):
        raise PermanentError('uploaded batch is not {"changes": [...]}', code="invalid_batch")
    return changes


def _advance_clock(settings: SyncSettings, now: datetime, seen: Hlc | None) -> Hlc:
    local = Hlc(settings.hlc_ms, settings.hlc_counter, SERVER_NODE)
    clock = receive(local, datetime_to_ms(now), seen)
    settings.hlc_ms, settings.hlc_counter = clock.ms, clock.counter
    return clock


def _summary(outcome: Outcome, rejected: list[Rejection]) -> dict[str, Any]:
    every = sorted([*rejected, *outcome.rejected], key=lambda r: r.index)
    return {
        "applied": outcome.applied,
        "rejected": [r.as_json() for r in every],
        "conflicts": len(outcome.conflicts),
    }


def _place_delta(
    store: Callable[[], ObjectStore],
    policy: SyncPolicy,
    device_id: uuid.UUID,
    batch_id: uuid.UUID,
    entities: Iterator[dict[str, Any]],
) -> dict[str, Any]:
    """Small deltas ride in the result; large ones go to S3 behind a presigned link.

    The JSON is streamed into a spooled file (memory up to the inline limit, then disk), so a
    large delta never sits in memory whole."""
    with tempfile.SpooledTemporaryFile(max_size=policy.inline_max_bytes + 1) as out:
        out.write(b'{"entities":[')
        count = 0
        for entity in entities:
            out.write(b"," if count else b"")
            out.write(json.dumps(entity, separators=(",", ":")).encode())
            count += 1
        out.write(b"]}")
        size = out.tell()
        out.seek(0)
        if size <= policy.inline_max_bytes:
            inline = json.loads(out.read())["entities"]
            return {"entity_count": count, "delta": inline, "delta_object": None}
        key = delta_key(device_id, batch_id)
        objects = store()
        objects.put(policy.bucket, key, out, size, content_type="application/json")  # type: ignore[arg-type]
    url = objects.presigned_get(policy.bucket, key, policy.delta_url_ttl)
    delta_object = {"key": key, "bytes": size, "url": url}
    return {"entity_count": count, "delta": None, "delta_object": delta_object}
