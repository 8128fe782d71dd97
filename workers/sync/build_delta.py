"""The delta a device receives: every entity changed since its cursor (plus those its batch
touched), as the registers it does not already know. Edits made outside sync are folded into
the registers here, with server timestamps, the first time any sync reads them.

Entities are produced page by page (keyset on the (owner, updated_at, id) index), so a full
resync of a large account never holds more than one page of rows in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from shared.db.repos import sync as sync_repo
from workers.sync import rows as rows_mod
from workers.sync.delta import entity_json, registers_for
from workers.sync.merge import State, adopt_server_edits

PAGE_ROWS = 2_000


@dataclass(frozen=True)
class DeltaRequest:
    user_id: uuid.UUID
    node: str  # the device's id: its own writes are not sent back
    since: datetime | None  # None: full resync, every live entity
    applied_at: datetime
    types: Collection[str]
    touched: Mapping[str, Collection[str]]


def build(session: Session, request: DeltaRequest) -> Iterator[dict[str, Any]]:
    for entity_type in sorted(request.types):
        yield from _of_type(session, request, entity_type)


def _of_type(session: Session, request: DeltaRequest, entity_type: str) -> Iterator[dict[str, Any]]:
    key = sync_repo.PRODUCT_TABLES[entity_type].key
    untouched = set(request.touched.get(entity_type, ()))
    after: tuple[datetime, Any] | None = None
    while True:
        page = sync_repo.changed_rows(
            session, entity_type, request.user_id, request.since, after=after, limit=PAGE_ROWS
        )
        if not page:
            break
        after = (page[-1]["updated_at"], page[-1][key])
        rows = {str(row[key]): row for row in page}
        untouched.difference_update(rows)
        yield from _entities(session, request, entity_type, rows)
    if untouched:  # touched but not changed: the device still needs to hear what won
        missing = sorted(untouched)
        for start in range(0, len(missing), PAGE_ROWS):
            ids = missing[start : start + PAGE_ROWS]
            rows = sync_repo.load_rows(session, entity_type, request.user_id, ids)
            yield from _entities(session, request, entity_type, rows)


def _entities(
    session: Session,
    request: DeltaRequest,
    entity_type: str,
    rows: Mapping[str, Mapping[str, Any]],
) -> Iterator[dict[str, Any]]:
    states = rows_mod.states_from_versions(
        sync_repo.load_versions(session, request.user_id, entity_type, list(rows))
    )
    adopted: list[dict[str, Any]] = []
    full = request.since is None
    for entity_id, row in rows.items():
        state = _with_server_edits(request, entity_type, entity_id, row, states, adopted)
        registers = registers_for(state, request.node, full=full)
        if registers:
            server = rows_mod.server_values(entity_type, row)
            yield entity_json(entity_type, entity_id, state, registers, server)
    sync_repo.upsert_versions(session, adopted)


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
