"""The Python publish API: create jobs transactionally (job row + event + outbox message)."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from sqlalchemy.orm import Session

from shared.db.models import Job
from shared.db.repos import jobs as jobs_repo
from shared.db.repos.outbox import PendingMessage
from shared.db.tenancy import DEFAULT_TENANT, tenant_of
from shared.errors import PermanentError
from shared.jobs.catalog import KindSpec, get_spec
from shared.jobs.messages import job_message
from shared.messaging.names import Priority, amqp_priority

if TYPE_CHECKING:
    from shared.messaging.handoff import Handoff


@dataclass(frozen=True)
class NewJob:
    kind: str
    user_id: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: Priority | None = None
    run_at: datetime | None = None
    job_id: uuid.UUID | None = None
    idempotency_key: str | None = None
    delay_s: float | None = None  # relative to `now`; exclusive with run_at

    def request_hash(self) -> str:
        """What the caller asked for, as given (a delay stays a delay, not an instant)."""
        request = {
            "kind": self.kind,
            "user_id": self.user_id,
            "payload": self.payload,
            "priority": self.priority,
            "run_at": self.run_at.isoformat() if self.run_at else None,
            "delay_s": self.delay_s,
        }
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyMismatch(PermanentError):
    code = "idempotency_mismatch"


@dataclass(frozen=True)
class Submitted:
    job_id: uuid.UUID
    created: bool  # False: an existing job was returned for the idempotency key
    # A created job's row as inserted, and its created_at: enough to answer with the job
    # without reading it back (None for an existing job).
    row: dict[str, Any] | None = None
    created_at: datetime | None = None


def _integral_floats_as_ints(value: Any) -> Any:
    """JSON has one number type: 7.0 is the integer 7 (as JSON Schema says)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_as_ints(v) for v in value]
    return value


def _model(spec: KindSpec, payload: dict[str, Any]) -> BaseModel:
    """JSON semantics, strictly: `true` is not 1 and "5" is not 5 (pydantic's lax mode would
    take both, so a client's typo would run as something it did not ask for)."""
    try:
        as_json = to_json(_integral_floats_as_ints(payload))
        model = spec.payload_model.model_validate_json(as_json, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise PermanentError(f"{where}: {first['msg']}", code="invalid_payload") from None
    version = getattr(model, "version", 1)
    if version not in spec.supported_versions:
        raise PermanentError(f"payload version {version} not supported", code="unknown_version")
    return model


def _work_of(model: BaseModel) -> float:
    """Seconds of work a payload declares (e.g. diag.noop's sleep_ms); 0 if it declares none."""
    declared = getattr(model, "declared_work_s", None)
    return float(declared()) if callable(declared) else 0.0


def validate_payload(spec: KindSpec, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload, normalized; refused if invalid or if the work it declares could not
    finish within the kind's time limit (it would only be killed and retried)."""
    model = _model(spec, payload)
    work = _work_of(model)
    if work >= spec.time_limit_s:
        raise PermanentError(
            f"payload declares {work:g} s of work, at or over {spec.kind}'s time limit of "
            f"{spec.time_limit_s:g} s",
            code="invalid_payload",
        )
    return model.model_dump(mode="json")


def declared_work_s(kind: str, payload: dict[str, Any]) -> float:
    """Seconds of worker time a job declares (0 for kinds whose payload declares none)."""
    return _work_of(_model(get_spec(kind), payload))


def job_row(
    spec: KindSpec,
    new: NewJob,
    *,
    job_id: uuid.UUID,
    payload: dict[str, Any],
    source: str,
    api_key_id: uuid.UUID | None,
    now: datetime,
    tenant_id: str = DEFAULT_TENANT,
) -> dict[str, Any]:
    priority = new.priority or spec.default_priority
    run_at = new.run_at or now
    if new.delay_s is not None:
        run_at = now + timedelta(seconds=new.delay_s)
    return {
        "id": job_id,
        "tenant_id": tenant_id,
        "kind": spec.kind,
        "pool": spec.pool.value,
        "user_id": new.user_id,
        "state": "queued",
        "priority": amqp_priority(priority),
        "payload": payload,
        "attempt": 0,
        "max_attempts": spec.max_attempts,
        "run_at": run_at,
        "source": source,
        "api_key_id": api_key_id,
        "idempotency_key": new.idempotency_key,
        "request_hash": new.request_hash() if new.idempotency_key else None,
        "progress": 0.0,
        "cancel_requested": False,
    }


def submit_jobs(
    session: Session,
    jobs: list[NewJob],
    *,
    source: str = "api",
    api_key_id: uuid.UUID | None = None,
    now: datetime | None = None,
    tenant_id: str | None = None,
    handoff: Handoff | None = None,
) -> list[Submitted]:
    """Validate and stage jobs in `session`; the caller's commit makes them real and due.

    With `handoff`, this process publishes the messages of the jobs due now right after the
    commit (shared/messaging/handoff.py); without, the scheduler's relay does.

    All-or-nothing: one invalid job raises before anything is written; in a batch its
    message starts with its index (`jobs[3]: ...`).
    The jobs belong to `tenant_id`, by default the tenant the session acts for (the
    owner's sessions, e.g. scheduler chores, pass the tenant of the row they act on).
    """
    now = now or datetime.now(UTC)
    tenant = tenant_id or tenant_of(session) or DEFAULT_TENANT
    staged: list[tuple[NewJob, dict[str, Any]]] = []
    for index, new in enumerate(jobs):
        try:
            spec = get_spec(new.kind)
            payload = validate_payload(spec, new.payload)
        except PermanentError as exc:
            if len(jobs) > 1:
                exc.message = f"jobs[{index}]: {exc.message}"
                exc.ids["index"] = index
            raise
        job_id = new.job_id or uuid.uuid4()
        row = job_row(
            spec,
            new,
            job_id=job_id,
            payload=payload,
            source=source,
            api_key_id=api_key_id,
            now=now,
            tenant_id=tenant,
        )
        staged.append((new, row))
    if handoff is not None and session.in_nested_transaction():
        handoff = None  # a savepoint may roll back alone: only the relay is safe there
    inserted = _write(session, staged, now, handoff)
    return [_outcome(session, new, row, inserted, api_key_id) for new, row in staged]


def _outcome(
    session: Session,
    new: NewJob,
    row: dict[str, Any],
    inserted: dict[uuid.UUID, datetime],
    api_key_id: uuid.UUID | None,
) -> Submitted:
    job_id = row["id"]
    if job_id in inserted:
        return Submitted(job_id, created=True, row=row, created_at=inserted[job_id])
    # Not inserted: the idempotency key (or the explicit job id) already names a job.
    existing = _existing_for_key(session, api_key_id, new.idempotency_key)
    if existing is not None and existing.request_hash not in (None, new.request_hash()):
        # As payment APIs do: a key reused for a different request is a client bug, not a replay.
        raise IdempotencyMismatch(
            f"Idempotency-Key {new.idempotency_key!r} was used for a different request "
            f"(job {existing.id})",
            job_id=existing.id,
        )
    return Submitted(existing.id if existing else job_id, created=False)


def _existing_for_key(
    session: Session, api_key_id: uuid.UUID | None, key: str | None
) -> Job | None:
    if api_key_id is None or key is None:
        return None
    return jobs_repo.find_by_idempotency_key(session, api_key_id, key)


def _write(
    session: Session,
    staged: list[tuple[NewJob, dict[str, Any]]],
    now: datetime,
    handoff: Handoff | None,
) -> dict[uuid.UUID, datetime]:
    """The job rows and their messages; a job not inserted (its id or idempotency key taken)
    gets no message. No `queued` history row: created_at is the submit (view job_history)."""
    messages = [
        job_message(
            job_id=row["id"],
            kind=row["kind"],
            user_id=row["user_id"],
            payload=row["payload"],
            priority=new.priority or get_spec(new.kind).default_priority,
            publish_after=row["run_at"] if row["run_at"] > now else None,
            tenant_id=row["tenant_id"],
        )
        for new, row in staged
    ]
    rows = [row for _, row in staged]
    if handoff is None:
        return jobs_repo.insert_jobs(session, rows, messages)
    inserted = jobs_repo.insert_jobs_for_handoff(session, rows, messages, handoff_s=handoff.grace_s)
    handoff.stage(
        session,
        [
            PendingMessage(
                0, m["exchange"], m["routing_key"], m["body"], m["headers"], m["priority"]
            )
            for m in messages
            if "publish_after" not in m and m["job_id"] in inserted.created
        ],
        outbox_ids=inserted.handed_off,
    )
    return inserted.created
