"""Request and response bodies of /v1/backups and /v1/backup-settings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.db.models import Backup, BackupSettings, Job
from workers.backups.tables import DATA_TYPES
from workers.ingress.schemas import JsonInt

# Validated by the route (422 `invalid_data_types` naming the known ones); an enum in OpenAPI.
DataType = Annotated[str, Field(json_schema_extra={"enum": list(DATA_TYPES)})]


class BackupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID
    type: Literal["full", "incremental"] = "full"
    data_types: list[DataType] | None = Field(default=None, min_length=1, max_length=20)


class RestoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["replace", "merge"] = "replace"
    dry_run: bool = Field(default=False, strict=True)


class BackupOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    status: str  # queued | running | completed | failed | cancelled
    requested_type: str
    type: str
    data_types: list[str]
    parent_id: uuid.UUID | None
    job_id: uuid.UUID | None
    progress: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    row_counts: dict[str, int] | None
    plain_bytes: int | None
    stored_bytes: int | None
    key_id: str | None
    since: datetime | None
    high_water_mark: datetime | None
    created_at: datetime
    completed_at: datetime | None
    restore_job_ids: list[uuid.UUID]

    @classmethod
    def of(cls, backup: Backup, job: Job | None) -> BackupOut:
        status = "completed" if backup.status == "completed" else _job_status(job)
        return cls(
            id=backup.id,
            user_id=backup.user_id,
            status=status,
            requested_type=backup.requested_type,
            type=backup.type,
            data_types=backup.data_types,
            parent_id=backup.parent_id,
            job_id=backup.job_id,
            progress=job.progress if job else None,
            error_code=job.error_code if job and status != "completed" else None,
            error_message=job.error_message if job and status != "completed" else None,
            row_counts=backup.row_counts,
            plain_bytes=backup.plain_bytes,
            stored_bytes=backup.stored_bytes,
            key_id=backup.key_id,
            since=backup.since,
            high_water_mark=backup.high_water_mark,
            created_at=backup.created_at,
            completed_at=backup.completed_at,
            restore_job_ids=backup.restore_job_ids,
        )


def _job_status(job: Job | None) -> str:
    if job is None:
        return "queued"
    return {"dead": "failed", "succeeded": "completed"}.get(job.state, job.state)


class BackupPage(BaseModel):
    backups: list[BackupOut]


class RestoreOut(BaseModel):
    backup_id: uuid.UUID
    job_id: uuid.UUID


class DeletedOut(BaseModel):
    deleted: list[uuid.UUID]


class DownloadOut(BaseModel):
    url: str
    manifest_url: str
    expires_at: datetime


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, strict=True)
    interval_s: JsonInt = Field(ge=60, le=90 * 24 * 3600)
    type: Literal["full", "incremental"] = "incremental"
    data_types: list[DataType] | None = Field(default=None, min_length=1, max_length=20)
    full_every: JsonInt = Field(default=7, ge=0, le=1000, description="a full after N incrementals")
    keep_last: JsonInt = Field(default=14, ge=1, le=10_000, description="restore points kept")


class SettingsOut(SettingsIn):
    user_id: uuid.UUID
    next_run_at: datetime

    @classmethod
    def of(cls, row: BackupSettings) -> SettingsOut:
        return cls(
            user_id=row.user_id,
            enabled=row.enabled,
            interval_s=row.interval_s,
            type=row.type,  # type: ignore[arg-type]
            data_types=row.data_types,
            full_every=row.full_every,
            keep_last=row.keep_last,
            next_run_at=row.next_run_at,
        )
