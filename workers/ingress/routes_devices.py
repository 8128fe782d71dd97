"""/v1/devices: register devices (API key), and let a device sync with its own secret.

Registry, settings and conflicts are for the product's back end (API key). Sync routes are
for the device itself: `Authorization: Device <secret>`; a device acts only on its own user.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.security import APIKeyHeader

from shared.db.models import SyncDevice, User
from shared.db.models.sync import SYNC_TYPES
from shared.db.repos import jobs as jobs_repo
from shared.db.repos import sync as sync_repo
from shared.db.tenancy import bind_tenant, current_tenant
from shared.errors import ConveyorError, PermanentError
from shared.jobs.submit import NewJob, submit_jobs
from shared.storage.base import ObjectNotFound
from workers.ingress.deps import ApiKeyDep, SessionDep, Unauthorized
from workers.ingress.quotas import check_device_syncs
from workers.ingress.routes_files import NotFound, SettingsDep, StoreDep, object_store, settings_of
from workers.ingress.schemas_devices import (
    ConflictOut,
    ConflictPage,
    DeviceCreated,
    DeviceIn,
    DeviceOut,
    DevicePage,
    RenameIn,
    ResolveIn,
    SettingsIn,
    SettingsOut,
    SyncAccepted,
    SyncIn,
    SyncJobOut,
    UploadSlot,
)
from workers.sync import conflicts
from workers.sync import cursor as cursor_mod
from workers.sync.service import batch_key, delta_key, sync_bucket

router = APIRouter(tags=["devices"])
JOB_NAMESPACE = uuid.UUID("5d1f0a52-8f0e-4a53-9f1e-7c0d6b7b3a10")


class DeviceRevoked(ConveyorError):
    code = "device_revoked"


def _user(session: SessionDep, user_id: uuid.UUID) -> User:
    user = session.get(User, user_id)
    if user is None or user.deleted_at is not None or user.tenant_id != current_tenant(session):
        raise NotFound("no such user", user_id=user_id)
    return user


def _device(session: SessionDep, device_id: uuid.UUID) -> SyncDevice:
    device = sync_repo.get_device(session, device_id)
    if device is None or device.tenant_id != current_tenant(session):
        raise NotFound("no such device", device_id=device_id)
    return device


# `Authorization: Device <secret>`, declared as its own scheme in OpenAPI.
device_secret = APIKeyHeader(
    name="Authorization",
    scheme_name="deviceSecret",
    description="`Device <secret>`, the secret returned once by POST /v1/devices",
    auto_error=False,
)


def device_auth(
    device_id: uuid.UUID,
    session: SessionDep,
    authorization: Annotated[str | None, Depends(device_secret)] = None,
) -> SyncDevice:
    scheme, _, secret = (authorization or "").partition(" ")
    device = sync_repo.get_device(session, device_id)
    # Unknown device and wrong secret look the same, so ids cannot be probed.
    if scheme.lower() != "device" or device is None:
        raise Unauthorized("missing or wrong device secret")
    if not sync_repo.secret_matches(device, secret.strip()):
        raise Unauthorized("missing or wrong device secret")
    if device.revoked_at is not None:
        raise DeviceRevoked("this device was revoked", device_id=device_id)
    bind_tenant(session, device.tenant_id)  # from now on the request acts as the device's tenant
    return device


DeviceDep = Annotated[SyncDevice, Depends(device_auth)]


@router.post("/v1/devices", status_code=201, response_model=DeviceCreated)
def create_device(
    body: DeviceIn, session: SessionDep, key: ApiKeyDep, settings: SettingsDep
) -> DeviceCreated:
    del key
    user = _user(session, body.user_id)
    sync_repo.ensure_settings(session, user.id, interval_s=settings.sync_default_interval_s)
    device, secret = sync_repo.create_device(session, user.id, body.name, body.platform)
    return DeviceCreated(**DeviceOut.of(device).model_dump(), secret=secret)


@router.get("/v1/devices", response_model=DevicePage)
def list_devices(user_id: uuid.UUID, session: SessionDep, key: ApiKeyDep) -> DevicePage:
    del key
    return DevicePage(devices=[DeviceOut.of(d) for d in sync_repo.list_devices(session, user_id)])


@router.get("/v1/devices/conflicts", response_model=ConflictPage)
def list_conflicts(
    user_id: uuid.UUID,
    session: SessionDep,
    key: ApiKeyDep,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,  # a bigint conflict id
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ConflictPage:
    del key
    rows = sync_repo.list_conflicts(session, user_id, after_id=after, limit=limit)
    return ConflictPage(
        conflicts=[ConflictOut.of(r) for r in rows],
        next_after=rows[-1].id if len(rows) == limit else None,
    )


@router.post("/v1/devices/conflicts/{conflict_id}/resolve", response_model=ConflictOut)
def resolve_conflict(
    conflict_id: Annotated[int, Path(ge=1, le=2**63 - 1)],  # a bigint: larger is a 422
    body: ResolveIn,
    session: SessionDep,
    key: ApiKeyDep,
) -> ConflictOut:
    del key
    resolved = conflicts.resolve(session, conflict_id, body.action, now=datetime.now(UTC))
    return ConflictOut.of(resolved)


@router.get("/v1/devices/settings", response_model=SettingsOut)
def get_sync_settings(
    user_id: uuid.UUID, session: SessionDep, key: ApiKeyDep, settings: SettingsDep
) -> SettingsOut:
    del key
    row = sync_repo.get_settings(session, user_id)
    if row is None:
        return SettingsOut(
            user_id=user_id, types=list(SYNC_TYPES), interval_s=settings.sync_default_interval_s
        )
    return SettingsOut(user_id=user_id, types=row.types, interval_s=row.interval_s)


@router.put("/v1/devices/settings", response_model=SettingsOut)
def put_sync_settings(
    body: SettingsIn, session: SessionDep, key: ApiKeyDep, settings: SettingsDep
) -> SettingsOut:
    del key
    user = _user(session, body.user_id)
    row = sync_repo.lock_user(session, user.id, interval_s=settings.sync_default_interval_s)
    row.types = [t for t in SYNC_TYPES if t in body.types]
    row.interval_s = body.interval_s
    return SettingsOut(user_id=user.id, types=row.types, interval_s=row.interval_s)


@router.patch("/v1/devices/{device_id:uuid}", response_model=DeviceOut)
def rename_device(
    device_id: uuid.UUID, body: RenameIn, session: SessionDep, key: ApiKeyDep
) -> DeviceOut:
    del key
    device = _device(session, device_id)
    device.name = body.name
    return DeviceOut.of(device)


@router.delete("/v1/devices/{device_id:uuid}", response_model=DeviceOut)
def revoke_device(device_id: uuid.UUID, session: SessionDep, key: ApiKeyDep) -> DeviceOut:
    del key
    device = _device(session, device_id)
    device.revoked_at = device.revoked_at or datetime.now(UTC)  # revoking twice keeps the first
    return DeviceOut.of(device)


@router.post(
    "/v1/devices/{device_id:uuid}/sync/uploads", status_code=201, response_model=UploadSlot
)
def start_batch_upload(device: DeviceDep, store: StoreDep, settings: SettingsDep) -> UploadSlot:
    batch_id = uuid.uuid4()
    ttl = timedelta(seconds=settings.sync_upload_url_ttl_s)
    url = store.presigned_put(sync_bucket(settings), batch_key(device.id, batch_id), ttl)
    return UploadSlot(batch_id=batch_id, url=url, expires_at=datetime.now(UTC) + ttl)


@router.post("/v1/devices/{device_id:uuid}/sync", status_code=202, response_model=SyncAccepted)
def sync(
    body: SyncIn, device: DeviceDep, session: SessionDep, request: Request, response: Response
) -> SyncAccepted:
    _check_request(body, device, request)
    # One job per (device, batch): sending a batch again returns the job that handles it
    # (answered even at the limits).
    job_id = uuid.uuid5(JOB_NAMESPACE, f"{device.id}:{body.batch_id}")
    if jobs_repo.get(session, job_id) is None:
        check_device_syncs(session, settings_of(request), device)
    if body.changes is not None:  # messages carry ids: the changes wait in the database
        sync_repo.stage_batch(session, device.id, body.batch_id, body.changes)
    payload = {
        "device_id": str(device.id),
        "batch_id": str(body.batch_id),
        "uploaded": body.uploaded,
    }
    if body.cursor is not None:
        payload["cursor"] = body.cursor
    new = NewJob("device.sync", str(device.user_id), payload, job_id=job_id)
    [outcome] = submit_jobs(session, [new], source="ingress")
    if not outcome.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return SyncAccepted(job_id=job_id, batch_id=body.batch_id)


def _check_request(body: SyncIn, device: SyncDevice, request: Request) -> None:
    """Courtesy checks so clients hear about mistakes now; the job checks again."""
    if body.uploaded == (body.changes is not None):
        raise PermanentError("send either changes or uploaded=true", code="invalid_payload")
    if body.cursor is not None:
        try:
            keys = cursor_mod.CursorKeys.from_ring(settings_of(request).key_ring())
            cursor_mod.decode(body.cursor, user_id=str(device.user_id), keys=keys)
        except cursor_mod.InvalidCursor as exc:
            raise PermanentError(str(exc), code="invalid_cursor") from None
    if body.uploaded:
        store = object_store(request)
        try:
            store.stat(sync_bucket(settings_of(request)), batch_key(device.id, body.batch_id))
        except ObjectNotFound:
            raise PermanentError(
                "PUT the batch to its upload URL first", code="batch_not_uploaded"
            ) from None


@router.get("/v1/devices/{device_id:uuid}/sync/{job_id:uuid}", response_model=SyncJobOut)
def sync_status(
    job_id: uuid.UUID,
    device: DeviceDep,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
) -> SyncJobOut:
    job = jobs_repo.get(session, job_id)
    if job is None or job.kind != "device.sync" or job.payload["device_id"] != str(device.id):
        raise NotFound("no such sync job", job_id=job_id)
    result = job.result
    if result is not None and result.get("delta_object"):
        key = delta_key(device.id, uuid.UUID(result["batch_id"]))  # a fresh link every time
        ttl = timedelta(seconds=settings.sync_delta_url_ttl_s)
        url = store.presigned_get(sync_bucket(settings), key, ttl)
        result = {**result, "delta_object": {**result["delta_object"], "url": url}}
    return SyncJobOut(
        job_id=job.id,
        state=job.state,
        error_code=job.error_code,
        error_message=job.error_message,
        result=result,
    )
