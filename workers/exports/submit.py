"""Creating an export: validate, enforce per-user limits, write the row and its job together.

Used by the ingress and by schedules; never commits (the caller's transaction does, so the
export row and its job appear together or not at all).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from shared.db.models import Export
from shared.db.repos import exports as exports_repo
from shared.db.tenancy import DEFAULT_TENANT, tenant_of
from shared.errors import ConveyorError, PermanentError
from shared.jobs.payloads.exports import ExportRequest
from shared.jobs.submit import NewJob, submit_jobs
from workers.exports import ranges
from workers.exports.datasets import Scope
from workers.exports.templates import plan

DAY = timedelta(days=1)
BUSY_RETRY_S = 30  # a guess at how soon a running export finishes


class RateLimited(ConveyorError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **ids: object) -> None:
        super().__init__(message, **ids)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limits:
    concurrent: int
    daily: int
    anonymize_available: bool


def validate(session: Session, user_id: str, request: ExportRequest, limits: Limits) -> str:
    """Fail fast on what the job would refuse anyway; returns the export's time zone."""
    try:
        product_user = uuid.UUID(user_id)
    except ValueError:
        raise PermanentError(
            "user_id must be a product user id (uuid)", code="unknown_user"
        ) from None
    # Always looked up (through the caller's tenant-bound session), even with a time zone
    # given: the export reads over an owner connection that row-level security does not
    # filter, so another tenant's user must be "unknown" here.
    stored = exports_repo.product_user_timezone(session, product_user)
    if stored is None:
        raise PermanentError(f"no user {user_id}", code="unknown_user", user_id=user_id)
    timezone = request.options.timezone or stored
    ranges.zone(timezone)
    if request.anonymize and not limits.anonymize_available:
        raise PermanentError(
            "anonymized exports are not configured on this server",
            code="anonymization_unavailable",
        )
    window = ranges.resolve(request.range, timezone, datetime.now(UTC))
    plan(request, Scope(product_user, window.start, window.end, timezone))  # names, values
    return timezone


def check_limits(session: Session, user_id: str, limits: Limits, now: datetime) -> None:
    exports_repo.lock_user(session, user_id)  # two concurrent requests cannot both slip in
    if exports_repo.count_active(session, user_id) >= limits.concurrent:
        raise RateLimited(
            f"at most {limits.concurrent} exports at a time", retry_after=BUSY_RETRY_S
        )
    recent = exports_repo.created_since(session, user_id, now - DAY)
    if len(recent) >= limits.daily:
        wait = recent[len(recent) - limits.daily] + DAY - now
        raise RateLimited(
            f"at most {limits.daily} exports per 24 hours",
            retry_after=max(1, int(wait.total_seconds()) + 1),
        )


def submit_export(
    session: Session,
    *,
    user_id: str,
    request: ExportRequest,
    api_key_id: uuid.UUID | None,
    schedule_id: uuid.UUID | None = None,
    source: str = "ingress",
    tenant_id: str | None = None,
) -> Export:
    """`tenant_id`: by default the session's (a request); the scheduler passes the schedule's."""
    tenant = tenant_id or tenant_of(session) or DEFAULT_TENANT
    export_id = uuid.uuid4()
    export = exports_repo.add(
        session,
        Export(
            id=export_id,
            tenant_id=tenant,
            user_id=user_id,
            api_key_id=api_key_id,
            schedule_id=schedule_id,
            request=request.model_dump(mode="json", by_alias=True),
            status="pending",
        ),
    )
    new = NewJob("export.create", user_id, {"export_id": str(export_id)})
    [outcome] = submit_jobs(session, [new], source=source, api_key_id=api_key_id, tenant_id=tenant)
    export.job_id = outcome.job_id
    session.flush()
    return export
