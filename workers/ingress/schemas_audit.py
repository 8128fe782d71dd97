"""Response bodies of GET /v1/audit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.db.models import AuditEvent


class AuditEventOut(BaseModel):
    id: int
    at: datetime
    tenant_id: str
    actor: str
    actor_key_id: uuid.UUID | None
    action: str
    target: str
    user_id: str | None
    details: dict[str, Any]

    @classmethod
    def of(cls, event: AuditEvent) -> AuditEventOut:
        return cls(
            id=event.id,
            at=event.at,
            tenant_id=event.tenant_id,
            actor=event.actor,
            actor_key_id=event.actor_key_id,
            action=event.action,
            target=event.target,
            user_id=event.user_id,
            details=event.details,
        )


class AuditPage(BaseModel):
    events: list[AuditEventOut]
    next_cursor: str | None = None
