"""/v1/backups and /v1/backup-settings: ask for backups and restores, list, download, delete,
and each user's schedule. The work itself runs in the `backup` pool (docs/backups.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query

from shared.db.models import ApiKey, Backup, BackupSettings
from shared.db.repos import audit as audit_repo
from shared.db.repos import backups as backups_repo
from shared.db.repos import jobs as jobs_repo
from shared.db.repos import tenants as tenants_repo
from shared.errors import ConveyorError, PermanentError
from shared.storage.buckets import Bucket, bucket_name
from workers.backups.requests import request_backup, request_restore
from workers.backups.retention import delete_objects, delete_rows, plan_delete
from workers.backups.tables import normalize
from workers.ingress.deps import ApiKeyDep, SessionDep, may_see
from workers.ingress.quotas import check_concurrent_backups
from workers.ingress.routes_files import NotFound, SettingsDep, StoreDep
from workers.ingress.schemas_backups import (
    BackupIn,
    BackupOut,
    BackupPage,
    DeletedOut,
    DownloadOut,
    RestoreIn,
    RestoreOut,
    SettingsIn,
    SettingsOut,
)

router = APIRouter(tags=["backups"])


class BackupNotReady(ConveyorError):
    code = "backup_not_ready"


def _data_types(requested: list[str] | None) -> list[str]:
    try:
        return normalize(requested)
    except ValueError as exc:
        raise PermanentError(str(exc), code="invalid_data_types") from None


def _visible(session: SessionDep, key: ApiKey, backup_id: uuid.UUID) -> Backup:
    backup = backups_repo.get(session, backup_id)
    if backup is None or not may_see(key, backup):
        raise NotFound("no such backup", backup_id=backup_id)
    return backup


def _require_user(session: SessionDep, user_id: uuid.UUID) -> None:
    """Backups read and write over owner connections: the user must be the caller's tenant's
    (another tenant's user id is "not found", never backed up or restored into)."""
    if not tenants_repo.product_user_visible(session, user_id):
        raise NotFound("no such user", user_id=user_id)


def _out(session: SessionDep, backup: Backup) -> BackupOut:
    job = jobs_repo.get(session, backup.job_id) if backup.job_id else None
    return BackupOut.of(backup, job)


@router.post("/v1/backups", status_code=202, response_model=BackupOut)
def create(body: BackupIn, session: SessionDep, key: ApiKeyDep, settings: SettingsDep) -> BackupOut:
    _require_user(session, body.user_id)
    check_concurrent_backups(session, settings, body.user_id)
    backup = request_backup(
        session,
        body.user_id,
        type=body.type,
        data_types=_data_types(body.data_types),
        api_key_id=key.id,
    )
    return _out(session, backup)


@router.get("/v1/backups", response_model=BackupPage)
def list_backups(
    session: SessionDep,
    key: ApiKeyDep,
    user_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> BackupPage:
    rows = backups_repo.of_user(session, user_id, limit=limit)
    visible = [b for b in rows if may_see(key, b)]
    return BackupPage(backups=[_out(session, b) for b in visible])


@router.get("/v1/backups/{backup_id:uuid}", response_model=BackupOut)
def get_backup(backup_id: uuid.UUID, session: SessionDep, key: ApiKeyDep) -> BackupOut:
    return _out(session, _visible(session, key, backup_id))


@router.get("/v1/backups/{backup_id:uuid}/download", response_model=DownloadOut)
def download(
    backup_id: uuid.UUID,
    session: SessionDep,
    key: ApiKeyDep,
    store: StoreDep,
    settings: SettingsDep,
) -> DownloadOut:
    backup = _visible(session, key, backup_id)
    if backup.status != "completed" or not backup.object_key or not backup.manifest_key:
        raise BackupNotReady("the backup is not completed", backup_id=backup_id)
    ttl = timedelta(seconds=settings.download_url_ttl_s)
    bucket = bucket_name(settings.bucket_prefix, Bucket.BACKUPS)
    return DownloadOut(
        url=store.presigned_get(bucket, backup.object_key, ttl),
        manifest_url=store.presigned_get(bucket, backup.manifest_key, ttl),
        expires_at=datetime.now(UTC) + ttl,
    )


@router.delete("/v1/backups/{backup_id:uuid}", response_model=DeletedOut)
def delete(
    backup_id: uuid.UUID,
    session: SessionDep,
    key: ApiKeyDep,
    store: StoreDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    chain: bool = False,
) -> DeletedOut:
    backup = _visible(session, key, backup_id)
    job = jobs_repo.get(session, backup.job_id) if backup.job_id else None
    if backup.status != "completed" and job is not None and job.state in ("queued", "running"):
        raise PermanentError("the backup is still running", code="backup_running")
    doomed = plan_delete(session, backup, chain=chain)
    keys = delete_rows(session, doomed)
    # After the response, i.e. after the session committed the rows' deletion.
    bucket = bucket_name(settings.bucket_prefix, Bucket.BACKUPS)
    background.add_task(delete_objects, store, bucket, keys)
    return DeletedOut(deleted=doomed)


@router.post("/v1/backups/{backup_id:uuid}/restore", status_code=202, response_model=RestoreOut)
def restore(
    backup_id: uuid.UUID, body: RestoreIn, session: SessionDep, key: ApiKeyDep
) -> RestoreOut:
    backup = _visible(session, key, backup_id)
    if backup.status != "completed":
        raise BackupNotReady("the backup is not completed", backup_id=backup_id)
    job_id = request_restore(
        session, backup, mode=body.mode, dry_run=body.dry_run, api_key_id=key.id
    )
    audit_repo.record(
        session,
        action="backup.restore_requested",
        target=f"backup:{backup.id}",
        actor="api",
        key=key,
        user_id=str(backup.user_id),
        job_id=str(job_id),
        mode=body.mode,
        dry_run=body.dry_run,
    )
    return RestoreOut(backup_id=backup.id, job_id=job_id)


@router.get("/v1/backup-settings/{user_id:uuid}", response_model=SettingsOut)
def get_settings(user_id: uuid.UUID, session: SessionDep, key: ApiKeyDep) -> SettingsOut:
    row = backups_repo.get_settings(session, user_id)
    if row is None or not may_see(key, row):
        raise NotFound("no backup settings for this user", user_id=user_id)
    return SettingsOut.of(row)


@router.put("/v1/backup-settings/{user_id:uuid}", response_model=SettingsOut)
def put_settings(
    user_id: uuid.UUID, body: SettingsIn, session: SessionDep, key: ApiKeyDep
) -> SettingsOut:
    _require_user(session, user_id)
    existing = backups_repo.get_settings(session, user_id)
    if existing is not None and not may_see(key, existing):
        raise NotFound("no backup settings for this user", user_id=user_id)
    row = backups_repo.put_settings(
        session,
        BackupSettings(
            user_id=user_id,
            api_key_id=key.id,
            enabled=body.enabled,
            interval_s=body.interval_s,
            type=body.type,
            data_types=_data_types(body.data_types),
            full_every=body.full_every,
            keep_last=body.keep_last,
            next_run_at=existing.next_run_at if existing else datetime.now(UTC),
        ),
    )
    return SettingsOut.of(row)
