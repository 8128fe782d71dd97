"""The delta a device receives: every entity changed since its cursor (plus those its batch
touched), as the registers it does not already know. Edits made outside sync are folded into
the registers here, with server timestamps, the first time any sync reads them."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from shared.db.repos import sync as sync_repo
from workers.sync import rows as rows_mod
from workers.sync.delta import entity_json, registers_for
from workers.sync.merge import State, adopt_server_edits


@dataclass(frozen=True)
class DeltaRequest:
    user_id: uuid.UUID
    node: str  # the device's id: its own writes are not sent back
    since: datetime | None  # None: full resync, every live entity
    applied_at: datetime
    types: Collection[str]
    touched: Mapping[str, Collection[str]]


def build(session: Session, request: DeltaRequest) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    for entity_type in sorted(request.types):
        entities.extend(_of_type(session, request, entity_type))
    return entities


def _of_type(session: Session, request: DeltaRequest, entity_type: str) -> list[dict[str, Any]]:
    rows = {
        str(row[sync_repo.PRODUCT_TABLES[entity_type].key]): row
        for row in sync_repo.changed_rows(session, entity_type, request.user_id, request.since)
    }
    missing = [i for i in request.touched.get(entity_type, ()) if i not in rows]
    if missing:  # touched but not changed: the device still needs to hear what won
        rows.update(sync_repo.load_rows(session, entity_type, request.user_id, missing))
    ids = list(rows)
    states = rows_mod.states_from_versions(
        sync_repo.load_versions(session, request.user_id, entity_type, ids)
    )
    adopted: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    full = request.since is None
    for entity_id, row in rows.items():
        state = _with_server_edits(request, entity_type, entity_id, row, states, adopted)
        registers = registers_for(state, request.node, full=full)
        if registers:
            server = rows_mod.server_values(entity_type, row)
            out.append(entity_json(entity_type, entity_id, state, registers, server))
    sync_repo.upsert_versions(session, adopted)
    return out


def _with_server_edits(
    request: DeltaRequest,
    entity_type: str,
    entity_id: str,
    row: Mapping[str, Any],
    states: Mapping[str, State],
    adopted: list[dict[str, Any]],
) -> State:
    state = states.get(entity_id, {})
    new = adopt_server_edits(
        state,
        rows_mod.field_values(entity_type, row),
        row_deleted=row["deleted_at"] is not None,
        edited_ms=rows_mod.datetime_to_ms(row["updated_at"]),
        applied_at=request.applied_at,
    )
    if new is None:
        return state
    adopted.extend(rows_mod.version_rows(request.user_id, entity_type, entity_id, new, state))
    return new
