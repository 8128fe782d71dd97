"""All SQL of analytics exports: export and schedule rows, limits, and streaming reads.

Bulk reads go through ADBC (libpq COPY in binary → Arrow record batches), about 50 times faster
than fetching tuples with psycopg. ADBC streams in bounded batches only for a statement
without bind parameters, so `stream` renders the statement's values as literals with
SQLAlchemy's PostgreSQL literal renderer (quotes doubled; values were type-checked first).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa
from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from shared.db.engine import libpq_dsn
from shared.db.models import Export, ExportSchedule, Job, User
from shared.db.tenancy import current_tenant

ACTIVE_JOB_STATES = ("queued", "running")
BATCH_BYTES = 2 * 1024 * 1024  # ADBC batch size hint: bounds memory per batch (~12k rows)


def add(session: Session, export: Export) -> Export:
    session.add(export)
    session.flush()
    return export


def get(session: Session, export_id: uuid.UUID) -> Export | None:
    return session.get(Export, export_id)


def with_job(session: Session, export_id: uuid.UUID) -> tuple[Export, Job | None] | None:
    stmt = select(Export, Job).outerjoin(Job, Job.id == Export.job_id).where(Export.id == export_id)
    row = session.execute(stmt).first()
    return (row[0], row[1]) if row else None


def list_for_user(
    session: Session, user_id: str, *, api_key_id: uuid.UUID | None, limit: int
) -> list[tuple[Export, Job | None]]:
    stmt = (
        select(Export, Job)
        .outerjoin(Job, Job.id == Export.job_id)
        .where(
            Export.tenant_id == current_tenant(session),
            Export.user_id == user_id,
            Export.status != "deleted",
        )
        .order_by(Export.created_at.desc(), Export.id)
        .limit(limit)
    )
    if api_key_id is not None:
        stmt = stmt.where(Export.api_key_id == api_key_id)
    return [(e, j) for e, j in session.execute(stmt).all()]


def count_active(session: Session, user_id: str) -> int:
    """Exports of the user whose job is still queued or running."""
    stmt = (
        select(func.count())
        .select_from(Export)
        .join(Job, Job.id == Export.job_id)
        .where(
            Export.tenant_id == current_tenant(session),
            Export.user_id == user_id,
            Job.state.in_(ACTIVE_JOB_STATES),
        )
    )
    return int(session.execute(stmt).scalar_one())


def created_since(session: Session, user_id: str, since: datetime) -> list[datetime]:
    """Creation times of the user's exports since `since`, oldest first."""
    stmt = (
        select(Export.created_at)
        .where(
            Export.tenant_id == current_tenant(session),
            Export.user_id == user_id,
            Export.created_at >= since,
        )
        .order_by(Export.created_at)
    )
    return list(session.execute(stmt).scalars())


def lock_user(session: Session, user_id: str) -> None:
    """Serialize limit checks of one (tenant, user) (transaction-scoped advisory lock)."""
    name = f"export:{current_tenant(session)}:{user_id}"
    session.execute(select(func.pg_advisory_xact_lock(func.hashtext(name))))


def product_user_timezone(session: Session, user_id: uuid.UUID) -> str | None:
    stmt = select(User.timezone).where(User.id == user_id, User.deleted_at.is_(None))
    return session.execute(stmt).scalar_one_or_none()


def due_for_expiry(session: Session, now: datetime, limit: int) -> list[Export]:
    stmt = (
        select(Export)
        .where(Export.status == "ready", Export.expires_at <= now)
        .order_by(Export.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.execute(stmt).scalars())


def mark(session: Session, export_id: uuid.UUID, **values: Any) -> None:
    session.execute(update(Export).where(Export.id == export_id).values(**values))


def mark_deleted(session: Session, export_id: uuid.UUID) -> tuple[str, str] | None:
    """Mark deleted; returns the file's place if it has one (read after the update, so a job
    committing `ready` concurrently is seen, not missed)."""
    stmt = (
        update(Export)
        .where(Export.id == export_id)
        .values(status="deleted")
        .returning(Export.bucket, Export.key)
    )
    bucket, key = session.execute(stmt).one()
    return (bucket, key) if bucket and key else None


def mark_ready(session: Session, export_id: uuid.UUID, **values: Any) -> bool:
    """Record the file, unless the export stopped being pending meanwhile (deleted)."""
    stmt = (
        update(Export)
        .where(Export.id == export_id, Export.status == "pending")
        .values(status="ready", **values)
    )
    return bool(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def figures(session: Session, summary: Select[Any]) -> list[tuple[str, Any]]:
    row = session.execute(summary).one()
    return list(row._asdict().items())


def estimated_rows(session: Session, statement: Select[Any]) -> int:
    """The planner's row estimate (EXPLAIN, nothing runs): cheap, approximate."""
    # exec_driver_sql: the literal SQL goes as is (text() would read ":word" as a parameter).
    sql = "EXPLAIN (FORMAT JSON) " + literal_sql(statement)
    plan = session.connection().exec_driver_sql(sql).scalar_one()
    return int(plan[0]["Plan"]["Plan Rows"])


def pairs(session: Session, statement: Select[Any], x: str, y: str, limit: int) -> list[Any]:
    sq = statement.subquery("chart")
    return [tuple(r) for r in session.execute(select(sq.c[x], sq.c[y]).limit(limit)).all()]


def literal_sql(statement: Select[Any]) -> str:
    # A paramstyle without "%" so that literal percent signs are not doubled for a driver
    # that will never see them (ADBC gets the finished text).
    dialect = postgresql.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


@contextmanager
def stream(database_url: str, statement: Select[Any]) -> Iterator[pa.RecordBatchReader]:
    """The statement's rows as Arrow record batches of about `BATCH_BYTES` each."""
    with adbc.connect(libpq_dsn(database_url)) as conn, conn.cursor() as cursor:
        cursor.adbc_statement.set_options(
            **{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_BYTES)}
        )
        cursor.execute(literal_sql(statement))
        yield cursor.fetch_record_batch()


def lock_due_schedules(session: Session, now: datetime, limit: int) -> Sequence[ExportSchedule]:
    """Due schedules, locked; a second scheduler skips them (and then sees them advanced)."""
    stmt = (
        select(ExportSchedule)
        .where(ExportSchedule.enabled, ExportSchedule.next_run_at <= now)
        .order_by(ExportSchedule.next_run_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.execute(stmt).scalars())


def add_schedule(session: Session, schedule: ExportSchedule) -> ExportSchedule:
    session.add(schedule)
    session.flush()
    return schedule


def get_schedule(session: Session, schedule_id: uuid.UUID) -> ExportSchedule | None:
    return session.get(ExportSchedule, schedule_id)


def list_schedules(
    session: Session, user_id: str, *, api_key_id: uuid.UUID | None
) -> list[ExportSchedule]:
    stmt = (
        select(ExportSchedule)
        .where(
            ExportSchedule.tenant_id == current_tenant(session), ExportSchedule.user_id == user_id
        )
        .order_by(ExportSchedule.created_at)
    )
    if api_key_id is not None:
        stmt = stmt.where(ExportSchedule.api_key_id == api_key_id)
    return list(session.execute(stmt).scalars())


def delete_schedule(session: Session, schedule: ExportSchedule) -> None:
    session.delete(schedule)
    session.flush()
