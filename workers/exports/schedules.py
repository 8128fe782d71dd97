"""Scheduled exports: cron expressions evaluated in the schedule's time zone.

Firing is once per period by construction: due rows are locked with SKIP LOCKED and
`next_run_at` moves past `now` in the same transaction that creates the export, so a second
scheduler either waits for the lock or finds the row no longer due. Missed periods (scheduler
down for a day) collapse into one run, not a burst.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import structlog
from croniter import croniter
from sqlalchemy.orm import Session

from shared.db.models import ExportSchedule
from shared.db.repos import exports as exports_repo
from shared.errors import PermanentError
from shared.jobs.payloads.exports import ExportRequest
from workers.exports.ranges import zone
from workers.exports.submit import submit_export

log = structlog.get_logger("exports")


def next_run(cron: str, timezone: str, after: datetime) -> datetime:
    """The first cron time strictly after `after`, read as wall-clock time in `timezone`."""
    if not croniter.is_valid(cron):
        raise PermanentError(f"invalid cron expression {cron!r}", code="invalid_cron")
    local_after = after.astimezone(zone(timezone))
    found: datetime = croniter(cron, local_after).get_next(datetime)
    return found.astimezone(UTC)


def new_schedule(
    user_id: str,
    cron: str,
    timezone: str,
    request: ExportRequest,
    api_key_id: uuid.UUID | None,
    *,
    now: datetime | None = None,
) -> ExportSchedule:
    return ExportSchedule(
        id=uuid.uuid4(),
        user_id=user_id,
        api_key_id=api_key_id,
        cron=cron,
        timezone=timezone,
        request=request.model_dump(mode="json", by_alias=True),
        enabled=True,
        next_run_at=next_run(cron, timezone, now or datetime.now(UTC)),
    )


def fire_due(session: Session, now: datetime, *, limit: int = 100) -> int:
    """Create one export for every due schedule and advance it; returns how many fired."""
    fired = 0
    for schedule in exports_repo.lock_due_schedules(session, now, limit):
        request = ExportRequest.model_validate(schedule.request)
        export = submit_export(
            session,
            user_id=schedule.user_id,
            request=request,
            api_key_id=schedule.api_key_id,
            schedule_id=schedule.id,
            source="scheduler",
            tenant_id=schedule.tenant_id,
        )
        schedule.last_run_at = now
        schedule.next_run_at = next_run(schedule.cron, schedule.timezone, now)
        log.info("exports.schedule_fired", schedule_id=str(schedule.id), export_id=str(export.id))
        fired += 1
    session.flush()
    return fired
