"""Outbox rows for the three things Conveyor publishes: job messages, events, dead letters."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from shared.config import get_settings
from shared.db.models import Job
from shared.db.repos.outbox import outbox_row
from shared.db.tenancy import DEFAULT_TENANT
from shared.errors import UnknownKind
from shared.jobs.catalog import get_spec
from shared.messaging.contract import JobEnvelope
from shared.messaging.names import (
    DETAIL_HEADER,
    EVENTS_EXCHANGE,
    JOBS_EXCHANGE,
    REASON_HEADER,
    SOURCE_QUEUE_HEADER,
    Priority,
    amqp_priority,
    dead_letter_queue,
    event_routing_key,
    priority_from_amqp,
)


def job_message(
    *,
    job_id: uuid.UUID,
    kind: str,
    user_id: str,
    payload: dict[str, Any],
    priority: Priority,
    publish_after: datetime | None = None,
    tenant_id: str = DEFAULT_TENANT,
) -> dict[str, Any]:
    envelope = JobEnvelope(
        version=1,
        job_id=job_id,
        kind=kind,
        user_id=user_id,
        tenant_id=tenant_id,
        payload=payload,
        priority=priority,
    )
    return outbox_row(
        exchange=JOBS_EXCHANGE,
        routing_key=kind,
        body=envelope.to_bytes(),
        priority=amqp_priority(priority),
        publish_after=publish_after,
        job_id=job_id,
    )


def event_message(
    *,
    job_id: uuid.UUID,
    kind: str,
    user_id: str,
    state: str,
    attempt: int,
    tenant_id: str,
    error_code: str | None = None,
    result: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body = {
        "version": 1,
        "job_id": str(job_id),
        "kind": kind,
        "tenant_id": tenant_id,  # user ids are unique per tenant only
        "user_id": user_id,
        "state": state,
        "attempt": attempt,
        "error_code": error_code,
        "result": result,
    }
    return outbox_row(
        exchange=EVENTS_EXCHANGE,
        routing_key=event_routing_key(kind, state),
        body=json.dumps(body, separators=(",", ":")).encode(),
    )


def dead_letter(*, queue: str, body: bytes, reason: str, detail: str) -> dict[str, Any]:
    return outbox_row(
        exchange="",
        routing_key=dead_letter_queue(queue),
        body=body,
        headers={REASON_HEADER: reason, DETAIL_HEADER: detail[:1000], SOURCE_QUEUE_HEADER: queue},
    )


def requeue_message(job: Job, *, publish_after: datetime | None = None) -> dict[str, Any]:
    """The job message for a stored job (retry, reaper, replay, republish)."""
    return job_message(
        job_id=job.id,
        kind=job.kind,
        user_id=job.user_id,
        payload=job.payload,
        priority=priority_from_amqp(job.priority),
        publish_after=publish_after,
        tenant_id=job.tenant_id,
    )


def publishes_completion(kind: str, state: str) -> bool:
    """Whether a job of `kind` reaching `state` gets a completion event: the setting
    CONVEYOR_COMPLETION_EVENTS (the kind, else "*"), else the catalogue (every terminal state
    by default; a kind no longer known keeps them all)."""
    overrides = get_settings().completion_events
    states = overrides.get(kind, overrides.get("*"))
    if states is not None:
        return state in states
    try:
        return state in get_spec(kind).completion_events
    except UnknownKind:
        return True


def completion_events(
    *,
    job_id: uuid.UUID,
    kind: str,
    user_id: str,
    state: str,
    attempt: int,
    tenant_id: str,
    error_code: str | None = None,
) -> list[dict[str, Any]]:
    """The completion event's outbox row, or none when that kind's events for `state` are off."""
    if not publishes_completion(kind, state):
        return []
    return [
        event_message(
            job_id=job_id,
            kind=kind,
            user_id=user_id,
            state=state,
            attempt=attempt,
            tenant_id=tenant_id,
            error_code=error_code,
        )
    ]


def events_for(job: Job, state: str, *, error_code: str | None = None) -> list[dict[str, Any]]:
    return completion_events(
        job_id=job.id,
        kind=job.kind,
        user_id=job.user_id,
        state=state,
        attempt=job.attempt,
        tenant_id=job.tenant_id,
        error_code=error_code,
    )
