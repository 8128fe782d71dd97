"""All SQL about jobs and their transitions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CursorResult,
    Table,
    and_,
    column,
    delete,
    func,
    insert,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.orm import Session

from shared.db.bulk import RowsInsert, cached_text
from shared.db.models import Job, JobEvent, OutboxMessage
from shared.db.models.jobs import TERMINAL_STATES
from shared.db.repos import outbox as outbox_repo
from shared.db.tenancy import tenant_of

J = cast(Table, Job.__table__)
E = cast(Table, JobEvent.__table__)
# The full history (alembic 0010): stored `job_events` rows plus the happy-path transitions
# the job row carries (submit at created_at, the current claim at started_at, succeed at
# finished_at). Not in the ORM metadata: it is a view.
H = table(
    "job_history",
    *(column(c) for c in ("job_id", "at", "attempt", "from_state", "to_state", "reason")),
    column("message"),
    column("phase"),
    column("seq"),
)

# When an attempt leaves `running` other than by succeeding, its claim becomes a stored row
# (with the time the row kept in started_at), so the history stays complete once the row
# moves on. A take-over stores the previous attempt's claim the same way (CLAIM_SQL).
_STORE_CLAIM = text(
    """
    INSERT INTO job_events (job_id, at, attempt, from_state, to_state)
    SELECT j.id, j.started_at, j.attempt, 'queued', 'running' FROM jobs AS j
    WHERE j.id = :job_id AND j.attempt = :attempt AND j.started_at IS NOT NULL
      AND NOT EXISTS (SELECT FROM job_events AS e
                      WHERE e.job_id = j.id AND e.attempt = j.attempt AND e.to_state = 'running')
    """
)


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    attempt: int
    from_state: str | None
    to_state: str
    reason: str | None
    message: str | None


def insert_jobs(
    session: Session,
    rows: Sequence[dict[str, Any]],
    messages: Sequence[dict[str, Any]] = (),
) -> dict[uuid.UUID, datetime]:
    """Insert new job rows, and the outbox rows (`messages`, each naming its `job_id`) of
    those actually inserted, in ONE statement whatever their number. Returns the ids
    inserted, with their `created_at` (existing ids and idempotency keys are left alone)."""
    return _insert_jobs(session, rows, messages, None).created


@dataclass(frozen=True)
class InsertedJobs:
    created: dict[uuid.UUID, datetime]  # job id → created_at, for the jobs inserted
    handed_off: list[int]  # outbox ids of the messages due now (hand-off only)


def insert_jobs_for_handoff(
    session: Session,
    rows: Sequence[dict[str, Any]],
    messages: Sequence[dict[str, Any]],
    *,
    handoff_s: float,
) -> InsertedJobs:
    """`insert_jobs` for a submitter that publishes the messages due now itself, after its
    commit: those are written due only `handoff_s` later (the relay's fallback), and their
    outbox ids come back so the hand-off can delete the rows it published."""
    return _insert_jobs(session, rows, messages, handoff_s)


def _insert_jobs(
    session: Session,
    rows: Sequence[dict[str, Any]],
    messages: Sequence[dict[str, Any]],
    handoff_s: float | None,
) -> InsertedJobs:
    if not rows:
        return InsertedJobs({}, [])
    jobs = RowsInsert.of(J, rows, param="jobs")
    sql = f"WITH inserted AS ({jobs.sql} ON CONFLICT DO NOTHING RETURNING id)"
    params = jobs.params
    of_inserted = "r.job_id IN (SELECT id FROM inserted)"
    if handoff_s is None:
        later, now_due = list(messages), []
    else:
        later = [m for m in messages if "publish_after" in m]
        now_due = [m for m in messages if "publish_after" not in m]
    if later:
        outbox = outbox_repo.rows_insert(later, where=of_inserted)
        sql += f", published AS ({outbox.sql})"
        params |= outbox.params
    if now_due:
        # RETURNING id only: the tenant role may read no other column of the outbox.
        outbox = outbox_repo.rows_insert(
            now_due, where=of_inserted, handoff_s=handoff_s, param="handed_off"
        )
        sql += f", handed_off AS ({outbox.sql} RETURNING id)"
        params |= outbox.params
    # One row back, not one per job (fetching 1,000 RETURNING rows was a tenth of a batch's
    # CPU): how many went in, and `now()`, which is every new row's created_at (the column's
    # default, the transaction's start). Only when some row conflicted come the ids.
    sql += f" SELECT count(*), now(), CASE WHEN count(*) < {len(rows)} THEN array_agg(id) END"
    if now_due:
        sql += ", (SELECT array_agg(id) FROM handed_off)"
    sql += " FROM inserted"
    found = tuple(session.execute(cached_text(sql), params).one())
    count, created_at, ids = found[:3]
    handed_off = list(found[3] or ()) if now_due else []
    if count == len(rows):
        return InsertedJobs(dict.fromkeys((row["id"] for row in rows), created_at), handed_off)
    return InsertedJobs(dict.fromkeys(ids or (), created_at), handed_off)


def find_by_idempotency_key(session: Session, api_key_id: uuid.UUID, key: str) -> Job | None:
    stmt = select(Job).where(Job.api_key_id == api_key_id, Job.idempotency_key == key)
    return session.execute(stmt).scalar_one_or_none()


def add_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(E), list(rows))


def add_event(
    session: Session,
    job_id: uuid.UUID,
    *,
    attempt: int,
    from_state: str | None,
    to_state: str,
    reason: str | None = None,
    message: str | None = None,
) -> None:
    """A non-happy transition's row; leaving `running` first stores that attempt's claim."""
    if from_state == "running":
        session.execute(_STORE_CLAIM, {"job_id": job_id, "attempt": attempt})
    add_events(
        session,
        [
            {
                "job_id": job_id,
                "attempt": attempt,
                "from_state": from_state,
                "to_state": to_state,
                "reason": reason,
                "message": message[:2000] if message else None,
            }
        ],
    )


def get(session: Session, job_id: uuid.UUID) -> Job | None:
    return session.get(Job, job_id)


def history_of(session: Session, job_id: uuid.UUID) -> list[HistoryEntry]:
    """Every transition of the job, in order: what `GET /v1/jobs/{id}` and `conveyor job` show."""
    stmt = (
        select(H.c.at, H.c.attempt, H.c.from_state, H.c.to_state, H.c.reason, H.c.message)
        .where(H.c.job_id == job_id)
        .order_by(H.c.phase, H.c.seq)
    )
    return [HistoryEntry(*row) for row in session.execute(stmt)]


def stored_events_of(session: Session, job_id: uuid.UUID) -> list[JobEvent]:
    """Only the stored rows (the non-happy transitions); most callers want `history_of`."""
    stmt = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
    return list(session.execute(stmt).scalars())


def list_jobs(
    session: Session,
    *,
    user_ids: Sequence[str] | None,
    api_key_id: uuid.UUID | None,
    kind: str | None,
    state: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Job]:
    """Newest first, keyset-paginated on (created_at, id): within the session's tenant, or
    across tenants for the owner's sessions (the operator's `conveyor jobs`)."""
    stmt = select(Job)
    tenant = tenant_of(session)
    if tenant is not None:
        stmt = stmt.where(Job.tenant_id == tenant)
    if api_key_id is not None:
        stmt = stmt.where(Job.api_key_id == api_key_id)
    if user_ids:
        stmt = stmt.where(Job.user_id.in_(user_ids))
    if kind:
        stmt = stmt.where(Job.kind == kind)
    if state:
        stmt = stmt.where(Job.state == state)
    if after is not None:
        created, last_id = after
        stmt = stmt.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < last_id))
        )
    stmt = stmt.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    return list(session.execute(stmt).scalars())


def database_now(session: Session) -> datetime:
    value = session.execute(select(func.clock_timestamp())).scalar_one()
    assert isinstance(value, datetime)
    return value


@dataclass(frozen=True)
class JobIdentity:
    state: str
    kind: str
    tenant_id: str


def identity_of(session: Session, job_id: uuid.UUID) -> JobIdentity | None:
    """A job's state, kind and tenant, or None if there is no such job."""
    query = select(J.c.state, J.c.kind, J.c.tenant_id).where(J.c.id == job_id)
    row = session.execute(query).one_or_none()
    return None if row is None else JobIdentity(row.state, row.kind, row.tenant_id)


def finish(
    session: Session,
    job_id: uuid.UUID,
    *,
    attempt: int,
    state: str,
    result: dict[str, Any] | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    run_at: datetime | None = None,
) -> bool:
    """running → state, only if this attempt still owns the job. False: someone took over."""
    values: dict[str, Any] = {
        "state": state,
        # clock_timestamp(), not now(): the handler's transaction may have begun long before.
        "updated_at": func.clock_timestamp(),
        "heartbeat_at": None,
        "error_code": error_code,
        "error_message": error_message,
    }
    if state == "queued":
        values["run_at"] = run_at
    else:
        values["finished_at"] = func.clock_timestamp()
        values["result"] = result
    if state == "succeeded":
        values["progress"] = 1.0
    stmt = (
        update(J)
        .where(J.c.id == job_id, J.c.attempt == attempt, J.c.state == "running")
        .values(**values)
    )
    return bool(cast(CursorResult[Any], session.execute(stmt)).rowcount)


def checkpoint(
    session: Session, job_id: uuid.UUID, *, attempt: int, progress: float, message: str | None
) -> bool | None:
    """Store progress; returns cancel_requested (None if this attempt no longer owns the job)."""
    stmt = (
        update(J)
        .where(J.c.id == job_id, J.c.attempt == attempt, J.c.state == "running")
        .values(
            progress=progress,
            progress_message=message,
            heartbeat_at=func.now(),
            updated_at=func.now(),
        )
        .returning(J.c.cancel_requested)
    )
    return session.execute(stmt).scalar_one_or_none()


def heartbeat(session: Session, owned: Sequence[tuple[uuid.UUID, int]]) -> None:
    """Skips rows locked right now: their job is being claimed or finished, which is fresher
    than a heartbeat, and a heartbeat that never waits can never deadlock."""
    ids = sorted(job_id for job_id, _ in owned)
    attempts = dict(owned)
    locked = (
        select(J.c.id, J.c.attempt)
        .where(J.c.id.in_(ids), J.c.state == "running")
        .order_by(J.c.id)
        .with_for_update(skip_locked=True)
    )
    current = session.execute(locked).all()
    mine = [row.id for row in current if attempts.get(row.id) == row.attempt]
    if mine:
        session.execute(update(J).where(J.c.id.in_(mine)).values(heartbeat_at=func.now()))


def lock_for_update(session: Session, job_id: uuid.UUID) -> Job | None:
    return session.execute(
        select(Job).where(Job.id == job_id).with_for_update()
    ).scalar_one_or_none()


def stale_running(session: Session, *, stale_s: float, limit: int) -> list[Job]:
    stmt = (
        select(Job)
        .where(
            Job.state == "running",
            Job.heartbeat_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, stale_s),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.execute(stmt).scalars())


def stuck_queued(session: Session, *, older_than_s: float, limit: int) -> list[Job]:
    """Due jobs untouched for a long time whose message is not still waiting in the outbox:
    their message may have been lost."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_s)
    in_outbox = (
        select(OutboxMessage.id)
        .where(OutboxMessage.job_id == Job.id, OutboxMessage.sent_at.is_(None))
        .exists()
    )
    stmt = (
        select(Job)
        .where(Job.state == "queued", Job.run_at < cutoff, Job.updated_at < cutoff, ~in_outbox)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.execute(stmt).scalars())


def delete_finished_before(
    session: Session,
    cutoff: datetime,
    *,
    only_kinds: Sequence[str] | None,
    except_kinds: Sequence[str],
    limit: int,
) -> int:
    """One batch of terminal jobs finished before `cutoff` (their events cascade)."""
    doomed = (
        select(J.c.id)
        .where(J.c.finished_at < cutoff, J.c.state.in_(TERMINAL_STATES))
        .order_by(J.c.finished_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if only_kinds is not None:
        doomed = doomed.where(J.c.kind.in_(only_kinds))
    if except_kinds:
        doomed = doomed.where(J.c.kind.not_in(except_kinds))
    result = session.execute(delete(J).where(J.c.id.in_(doomed.scalar_subquery())))
    return int(cast(CursorResult[Any], result).rowcount or 0)


def counts_by_kind_state(session: Session) -> list[tuple[str, str, int]]:
    stmt = select(J.c.kind, J.c.state, func.count()).group_by(J.c.kind, J.c.state)
    return [(k, s, int(n)) for k, s, n in session.execute(stmt)]


def oldest_queued_age_s(session: Session) -> dict[str, float]:
    """Per kind: seconds since the oldest queued job became due."""
    age = func.extract("epoch", func.now() - func.min(J.c.run_at))
    stmt = (
        select(J.c.kind, age)
        .where(J.c.state == "queued", J.c.run_at <= func.now())
        .group_by(J.c.kind)
    )
    return {k: max(0.0, float(a)) for k, a in session.execute(stmt)}
