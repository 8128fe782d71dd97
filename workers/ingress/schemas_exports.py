"""Request and response bodies of /v1/exports and /v1/export-schedules."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.db.models import Export, ExportSchedule, Job
from shared.jobs.payloads.exports import ExportRequest


class ExportIn(ExportRequest):
    user_id: str = Field(min_length=1, max_length=200)


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=200)
    cron: str = Field(min_length=9, max_length=100)
    timezone: str | None = Field(default=None, max_length=64)  # default: the user's
    export: ExportRequest


def public_status(export: Export, job: Job | None) -> str:
    """The file's state once there is one; before that, the job's."""
    if export.status != "pending" or job is None:
        return export.status
    return {"dead": "failed", "succeeded": "ready"}.get(job.state, job.state)


class ExportOut(BaseModel):
    id: uuid.UUID
    user_id: str
    status: str
    job_id: uuid.UUID | None
    request: dict[str, Any]
    progress: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    filename: str | None = None
    size: int | None = None
    rows: int | None = None
    created_at: datetime
    completed_at: datetime | None = None
    expires_at: datetime | None = None
    download_url: str | None = None

    @classmethod
    def of(cls, export: Export, job: Job | None, download_url: str | None = None) -> ExportOut:
        return cls(
            id=export.id,
            user_id=export.user_id,
            status=public_status(export, job),
            job_id=export.job_id,
            request=export.request,
            progress=job.progress if job else None,
            error_code=job.error_code if job and export.status == "pending" else None,
            error_message=job.error_message if job and export.status == "pending" else None,
            filename=export.filename,
            size=export.size,
            rows=export.row_count,
            created_at=export.created_at,
            completed_at=export.completed_at,
            expires_at=export.expires_at,
            download_url=download_url,
        )


class ExportPage(BaseModel):
    exports: list[ExportOut]


class ScheduleOut(BaseModel):
    id: uuid.UUID
    user_id: str
    cron: str
    timezone: str
    export: dict[str, Any]
    enabled: bool
    next_run_at: datetime
    last_run_at: datetime | None

    @classmethod
    def of(cls, schedule: ExportSchedule) -> ScheduleOut:
        return cls(
            id=schedule.id,
            user_id=schedule.user_id,
            cron=schedule.cron,
            timezone=schedule.timezone,
            export=schedule.request,
            enabled=schedule.enabled,
            next_run_at=schedule.next_run_at,
            last_run_at=schedule.last_run_at,
        )


class TemplateOut(BaseModel):
    name: str
    title: str
    description: str
    columns: list[dict[str, str | None]]
    chart: bool


class TemplateList(BaseModel):
    templates: list[TemplateOut]
    datasets: dict[str, list[dict[str, str | None]]]
    formats: list[str]
    compressions: list[str]
    ranges: list[str]
