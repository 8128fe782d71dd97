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
    JsonValue,
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


def _json_integer(value: object) -> object:
    """What JSON Schema calls an integer: 7 or 7.0, never `true` or "7" (pydantic's lax mode
    takes both, strict mode refuses 7.0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]


def _strict_run_at(value: object) -> object:
    """An ISO 8601 string with a time zone; numbers (Unix times? relative?) are refused."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string with a time zone; use delay_s for a delay")
    return value


def public_kinds() -> list[str]:
    from shared.jobs.catalog import all_specs

    return [spec.kind for spec in all_specs() if spec.public]


def _public_payload_schemas(schema: dict[str, JsonValue]) -> None:
    """`payload` in OpenAPI: one of the public kinds' payload models (with their supported
    versions), so a schema-valid payload is one some kind accepts."""
    from shared.jobs.catalog import all_specs

    options: list[JsonValue] = []
    for spec in all_specs():
        model_schema = spec.payload_model.model_json_schema()
        if not spec.public or "$defs" in model_schema:
            continue
        properties = model_schema.get("properties", {})
        if isinstance(properties, dict) and "version" in properties:
            properties["version"] = {"enum": sorted(spec.supported_versions), "default": 1}
        options.append(model_schema)
    schema.clear()
    schema["anyOf"] = options or [{"type": "object"}]


def all_kinds() -> list[str]:
    from shared.jobs.catalog import all_specs

    return [spec.kind for spec in all_specs()]


class JobIn(BaseModel):
    # OpenAPI states the one cross-field rule: not both run_at and delay_s (non-null).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "not": {
                "required": ["run_at", "delay_s"],
                "properties": {"run_at": {"type": "string"}, "delay_s": {"type": "number"}},
            }
        },
    )

    # An enum in OpenAPI; validated by the catalogue so an unknown kind keeps its own code
    # (422 `unknown_kind`) and an internal one its 403.
    kind: str = Field(
        min_length=1,
        max_length=100,
        json_schema_extra=lambda schema: schema.update(enum=list[JsonValue](public_kinds())),
    )
    user_id: str = Field(min_length=1, max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict, json_schema_extra=_public_payload_schemas)
    priority: Priority | None = None
    run_at: Annotated[AwareDatetime, BeforeValidator(_strict_run_at)] | None = Field(
        default=None, description="not before this time: ISO 8601 with a time zone"
    )
    delay_s: float | None = Field(
        default=None,
        strict=True,  # a number, not `true` or "5"
        ge=0,
        le=MAX_AHEAD.total_seconds(),
        description="not before this many seconds from now (instead of run_at)",
    )

    @field_validator("run_at")
    @classmethod
    def _not_too_far(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:  # 0001-01-01T00:00+01:00 is year 0 in UTC: neither Python nor PostgreSQL has it
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range: must be between years 1 and 9999 in UTC") from None
        if value > datetime.now(UTC) + MAX_AHEAD:
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


def new_job_out(row: dict[str, Any], created_at: datetime) -> JobOut:
    """A job just inserted, from the row as written (shared/jobs/submit.py `job_row`) and the
    `created_at` the insert returned: the same answer a read-back gives, without the read
    (and without validating values that are ours: a tenth of a 1,000-job batch's CPU)."""
    return JobOut.model_construct(
        id=row["id"],
        kind=row["kind"],
        pool=row["pool"],
        user_id=row["user_id"],
        state=row["state"],
        priority=PRIORITY_NAMES.get(row["priority"], str(row["priority"])),
        payload=row["payload"],
        result=None,
        error_code=None,
        error_message=None,
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        progress=row["progress"],
        progress_message=None,
        cancel_requested=row["cancel_requested"],
        run_at=row["run_at"],
        created_at=created_at,
        started_at=None,
        finished_at=None,
        worker=None,
        events=None,
    )


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


class BatchOut(BaseModel):
    jobs: list[JobOut]


class ErrorOut(BaseModel):
    code: str
    message: str
