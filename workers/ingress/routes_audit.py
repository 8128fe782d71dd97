"""GET /v1/audit: the audit log, newest first, for admin keys only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from shared.db.repos import audit as audit_repo
from workers.ingress.cursors import decode_seq_cursor, encode_seq_cursor
from workers.ingress.deps import AdminKeyDep, SessionDep
from workers.ingress.schemas_audit import AuditEventOut, AuditPage

router = APIRouter(tags=["audit"])


@router.get("/v1/audit", response_model=AuditPage)
def list_audit_events(
    session: SessionDep,
    key: AdminKeyDep,
    action: Annotated[str | None, Query(max_length=50)] = None,
    actor_key_id: uuid.UUID | None = None,
    target: Annotated[str | None, Query(max_length=300)] = None,
    user_id: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> AuditPage:
    del key  # admin only: checked by the dependency
    filters = audit_repo.AuditFilter(action, actor_key_id, target, user_id, since, until)
    after = decode_seq_cursor(cursor) if cursor else None
    events = audit_repo.list_events(session, filters, after=after, limit=limit)
    last = events[-1] if len(events) == limit else None
    return AuditPage(
        events=[AuditEventOut.of(e) for e in events],
        next_cursor=encode_seq_cursor(last.at, last.id) if last else None,
    )
