"""Resolving a conflict-log entry (`POST /v1/devices/conflicts/{id}/resolve`).

`dismiss` only marks the entry. `restore` puts the lost value back as a server-side edit of the
product row: a lost field value is written again (and the entity undeleted if a delete hid
it); a lost delete deletes the entity again. Sync adopts the edit on the next sync of any of
the user's devices, stamped later than everything the server has seen, so it wins and reaches
every device like any other server edit. Resolving twice is refused (`already_resolved`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from shared.db.models import SyncConflict
from shared.db.repos import sync as sync_repo
from shared.errors import ConveyorError, PermanentError
from workers.sync.entities import ENTITY_TYPES
from workers.sync.merge import TOMBSTONE

Action = Literal["restore", "dismiss"]


class ConflictNotFound(ConveyorError):
    code = "not_found"


def resolve(session: Session, conflict_id: int, action: Action, *, now: datetime) -> SyncConflict:
    conflict = sync_repo.get_conflict(session, conflict_id)
    if conflict is None:
        raise ConflictNotFound("no such conflict", conflict_id=conflict_id)
    if conflict.resolved_at is not None:
        raise PermanentError("this conflict was already resolved", code="already_resolved")
    if action == "restore":
        values = _restored_columns(conflict, now)
        if not sync_repo.write_back(
            session, conflict.entity_type, conflict.user_id, conflict.entity_id, values
        ):
            raise PermanentError("the entity no longer exists", code="entity_gone")
    conflict.resolved_at = now
    conflict.resolution = "restored" if action == "restore" else "dismissed"
    return conflict


def _restored_columns(conflict: SyncConflict, now: datetime) -> dict[str, Any]:
    if conflict.field == TOMBSTONE:
        return {"deleted_at": now}
    spec = ENTITY_TYPES[conflict.entity_type].fields[conflict.field]
    value = conflict.lost_value
    if spec.is_time and value is not None:
        value = datetime.fromisoformat(value)
    columns: dict[str, Any] = {conflict.field: value, "deleted_at": None}
    if conflict.entity_type == "task" and conflict.field == "status":
        columns["completed_at"] = now if value == "done" else None
    return columns
