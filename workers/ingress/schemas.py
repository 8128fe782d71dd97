"""Request and response bodies of the public HTTP API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from shared.db.models import Job
from shared.db.repos.jobs import HistoryEntry
from shared.messaging.names import AMQP_PRIORITY, Priority

PRIORITY_NAMES = {v: k.value for k, v in AMQP_PRIORITY.items()}


# How far ahead a job may be scheduled: far enough for reminders, near enough to catch a
# unit mistake (milliseconds for seconds, year 9999).
MAX_AHEAD = timedelta(days=366)


def _strict_run_at(value: object) -> object:
    """An ISO 8601 string with a time zone; numbers (Unix times? relative?) are refused."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string with a time zone; use delay_s for a delay")
    return value


class JobIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(min_length=1, max_length=100)
    user_id: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: Priority | None = None
    run_at: Annotated[AwareDatetime, BeforeValidator(_strict_run_at)] | None = Field(
        default=None, description="not before this time: ISO 8601 with a time zone"
    )
    delay_s: float | None = Field(
        default=None,
        ge=0,
        le=MAX_AHEAD.total_seconds(),
        description="not before this many seconds from now (instead of run_at)",
    )

    @field_validator("run_at")
    @classmethod
    def _not_too_far(cls, value: datetime | None) -> datetime | None:
        if value is not None and value > datetime.now(UTC) + MAX_AHEAD:
            raise ValueError(f"must be at most {MAX_AHEAD.days} days ahead")
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> JobIn:
        if self.run_at is not None and self.delay_s is not None:
            raise ValueError("give run_at or delay_s, not both")
        return self


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: list[JobIn] = Field(min_length=1)


class EventOut(BaseModel):
    at: datetime
    attempt: int
    from_state: str | None
    to_state: str
    reason: str | None
    message: str | None

    @classmethod
    def of(cls, event: HistoryEntry) -> EventOut:
        return cls(
            at=event.at,
            attempt=event.attempt,
            from_state=event.from_state,
            to_state=event.to_state,
            reason=event.reason,
            message=event.message,
        )


class JobOut(BaseModel):
    id: uuid.UUID
    kind: str
    pool: str
    user_id: str
    state: str
    priority: str
    payload: dict[str, Any]
    result: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    attempt: int
    max_attempts: int
    progress: float
    progress_message: str | None
    cancel_requested: bool
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None = None  # host:pid of the worker that ran (or runs) the last attempt
    events: list[EventOut] | None = None

    @classmethod
    def of(cls, job: Job, events: list[HistoryEntry] | None = None) -> JobOut:
        return cls(
            id=job.id,
            kind=job.kind,
            pool=job.pool,
            user_id=job.user_id,
            state=job.state,
            priority=PRIORITY_NAMES.get(job.priority, str(job.priority)),
            payload=job.payload,
            result=job.result,
            error_code=job.error_code,
            error_message=job.error_message,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            progress=job.progress,
            progress_message=job.progress_message,
            cancel_requested=job.cancel_requested,
            run_at=job.run_at,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            worker=job.worker,
            events=[EventOut.of(e) for e in events] if events is not None else None,
        )


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


class BatchOut(BaseModel):
    jobs: list[JobOut]


class ErrorOut(BaseModel):
    code: str
    message: str
