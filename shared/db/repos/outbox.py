"""Outbox queries: rows are written with the state they announce and published by the relay."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, delete, func, select, text
from sqlalchemy.orm import Session

from shared.db.bulk import RowsInsert, cached_text
from shared.db.models import OutboxMessage

T = cast(Table, OutboxMessage.__table__)


@dataclass(frozen=True)
class PendingMessage:
    id: int
    exchange: str
    routing_key: str
    body: bytes
    headers: dict[str, Any] | None
    priority: int


def outbox_row(
    *,
    exchange: str,
    routing_key: str,
    body: bytes,
    headers: dict[str, Any] | None = None,
    priority: int = 0,
    publish_after: datetime | None = None,
    job_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """A row for `add_many`; without `publish_after` it is due at once (database clock)."""
    row: dict[str, Any] = {
        "job_id": job_id,
        "exchange": exchange,
        "routing_key": routing_key,
        "body": body,
        "headers": headers,
        "priority": priority,
    }
    if publish_after is not None:
        row["publish_after"] = publish_after
    return row


def rows_insert(
    rows: Sequence[dict[str, Any]],
    *,
    where: str | None = None,
    handoff_s: float | None = None,
    param: str = "messages",
) -> RowsInsert:
    """The INSERT of these rows (shared/db/bulk.py), alone or inside a larger statement; a
    row without `publish_after` is due at once (database clock), or `handoff_s` from now
    when the submitting process publishes it itself (shared/messaging/handoff.py)."""
    due = [{"publish_after": None, **row} for row in rows]
    default = "now()" if handoff_s is None else f"now() + interval '{float(handoff_s)} seconds'"
    return RowsInsert.of(T, due, param=param, defaults={"publish_after": default}, where=where)


def add_many(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """One statement for any number of rows."""
    if rows:
        insert = rows_insert(rows)
        session.execute(cached_text(insert.sql), insert.params)


# Built once: the relay runs it on every pass (the ORM version's cache key and coercions
# were ~8 % of the scheduler's samples under load).
_CLAIM_DUE = text(
    "SELECT id, exchange, routing_key, body, headers, priority FROM outbox"
    " WHERE sent_at IS NULL AND publish_after <= now()"
    " ORDER BY publish_after, id LIMIT :limit FOR UPDATE SKIP LOCKED"
)


def claim_due(session: Session, limit: int) -> list[PendingMessage]:
    """Lock due rows so two relays never publish the same row at the same time."""
    return [PendingMessage(*row) for row in session.execute(_CLAIM_DUE, {"limit": limit})]


_DELETE_PUBLISHED = text("DELETE FROM outbox WHERE id = ANY(:ids)")


def delete_published(session: Session, ids: Sequence[int]) -> None:
    """Published rows leave at once (one write per row instead of a mark and a later prune).
    In the relay's transaction: a crash before its commit leaves them pending, republished."""
    if ids:
        # One array parameter: an expanding IN renders a statement per batch size (4.6 % of
        # the scheduler's samples went to rendering and caching them).
        session.execute(_DELETE_PUBLISHED, {"ids": list(ids)})


def prune_sent(session: Session, older_than: datetime) -> int:
    """Rows marked sent (by relays before issue #11, during a rolling deploy); new relays
    delete what they publish, so this finds nothing once they all run."""
    result = cast(CursorResult[Any], session.execute(delete(T).where(T.c.sent_at < older_than)))
    return int(result.rowcount or 0)


def pending_count(session: Session) -> int:
    """Due rows not yet published; delayed rows (a job's future run_at) are not a backlog."""
    stmt = (
        select(func.count())
        .select_from(T)
        .where(T.c.sent_at.is_(None), T.c.publish_after <= func.now())
    )
    return int(session.execute(stmt).scalar_one())


_NEXT_DUE = text(
    "SELECT extract(epoch FROM min(publish_after) - now()) FROM outbox WHERE sent_at IS NULL"
)


def seconds_until_next_due(session: Session) -> float | None:
    value = session.execute(_NEXT_DUE).scalar()
    return None if value is None else max(0.0, float(value))
