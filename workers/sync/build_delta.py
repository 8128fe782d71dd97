"""The delta a device receives: every entity changed since its cursor (plus those its batch
touched), as the registers it does not already know. Edits made outside sync are folded into
the registers here, with server timestamps, the first time any sync reads them.

Rows are read in keyset order on the (owner, updated_at, id) index, a query of `PAGE_ROWS` at
a time, and one sync answers at most `Page.max_rows` of them: a larger delta continues in the
next sync from the position a paged cursor carries (docs/sync.md "Paged deltas").
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
from workers.sync.cursor import EPOCH, Resume
from workers.sync.delta import entity_json, registers_for
from workers.sync.entities import ENTITY_TYPES
from workers.sync.merge import State, adopt_server_edits

PAGE_ROWS = 2_000  # rows per query


@dataclass(frozen=True)
class DeltaRequest:
    user_id: uuid.UUID
    node: str  # the device's id: its own writes are not sent back
    since: datetime | None  # None: full resync, every live entity
    applied_at: datetime
    types: Collection[str]
    unwritten: Mapping[str, Collection[str]]  # named by the batch, not changed by it


@dataclass
class Page:
    """One page of a delta: at most `max_rows` rows scanned, from `start` on. After the page
    is consumed, `next` says where the following page starts (None: the delta is complete)."""

    max_rows: int
    start: Resume | None = None
    next: Resume | None = None
    scanned: int = 0


def build(session: Session, request: DeltaRequest, page: Page) -> Iterator[dict[str, Any]]:
    """Entities named by the batch but not changed by it first (the device still needs to
    hear what won; changed ones are in the scan, stamped now), then the page of the scan of
    rows changed since the cursor, type by type in name order, keyset (updated_at, id)."""
    for entity_type, ids in sorted(request.unwritten.items()):
        missing = sorted(ids)
        for start in range(0, len(missing), PAGE_ROWS):
            chunk = missing[start : start + PAGE_ROWS]
            rows = sync_repo.load_rows(session, entity_type, request.user_id, chunk)
            yield from _entities(session, request, entity_type, rows)
    for entity_type in sorted(request.types):
        if page.start is None or entity_type >= page.start.entity_type:
            yield from _of_type(session, request, entity_type, page)
            if page.next is not None:
                return


def _of_type(
    session: Session, request: DeltaRequest, entity_type: str, page: Page
) -> Iterator[dict[str, Any]]:
    key = sync_repo.key_column(entity_type)
    after = _position(entity_type, page.start)
    while True:
        limit = min(PAGE_ROWS, page.max_rows - page.scanned)
        if limit <= 0:  # the page is full: the next one starts here, if anything is left
            peek = sync_repo.changed_rows(
                session, entity_type, request.user_id, request.since, after=after, limit=1
            )
            if peek:
                when, last = after or (EPOCH, None)
                key_text = "" if last is None else str(last)
                page.next = Resume(request.since, entity_type, when, key_text)
            return
        rows = sync_repo.changed_rows(
            session, entity_type, request.user_id, request.since, after=after, limit=limit
        )
        page.scanned += len(rows)
        if rows:
            after = (rows[-1]["updated_at"], rows[-1][key])
            yield from _entities(session, request, entity_type, {str(r[key]): r for r in rows})
        if len(rows) < limit:
            return


def _position(entity_type: str, start: Resume | None) -> tuple[datetime, Any] | None:
    """The keyset position to continue `entity_type` after, from a paged cursor."""
    if start is None or start.entity_type != entity_type or not start.key:
        return None
    key: Any = start.key if entity_type == "setting" else uuid.UUID(start.key)
    return (start.updated_at, key)


def _entities(
    session: Session,
    request: DeltaRequest,
    entity_type: str,
    rows: Mapping[str, Mapping[str, Any]],
) -> Iterator[dict[str, Any]]:
    if ENTITY_TYPES[entity_type].read_only:  # registers come from the row alone
        synthesized = {i: rows_mod.server_state(entity_type, row) for i, row in rows.items()}
        yield from _emit(request, entity_type, rows, synthesized)
        return
    states: dict[str, State] = {}
    adopted: list[dict[str, Any]] = []
    for owner, ids in _by_owner(request, entity_type, rows).items():
        loaded = rows_mod.states_from_registers(
            sync_repo.load_registers(session, owner, entity_type, ids)
        )
        for entity_id in ids:
            states[entity_id] = _with_server_edits(
                request.applied_at, owner, entity_type, entity_id, rows[entity_id], loaded, adopted
            )
    yield from _emit(request, entity_type, rows, states)
    sync_repo.upsert_registers(session, adopted)


def _by_owner(
    request: DeltaRequest, entity_type: str, rows: Mapping[str, Mapping[str, Any]]
) -> dict[uuid.UUID, list[str]]:
    """Whose registers each entity has: the user's, or for a message its author's."""
    if entity_type != "message":
        return {request.user_id: list(rows)}
    owners: dict[uuid.UUID, list[str]] = {}
    for entity_id, row in rows.items():
        owners.setdefault(row["author_id"], []).append(entity_id)
    return owners


def _emit(
    request: DeltaRequest,
    entity_type: str,
    rows: Mapping[str, Mapping[str, Any]],
    states: Mapping[str, State],
) -> Iterator[dict[str, Any]]:
    for entity_id, row in rows.items():
        state = states[entity_id]
        whole = _joined_since(request, row)
        registers = registers_for(state, request.node, full=request.since is None, whole=whole)
        if registers:
            server = rows_mod.server_values(entity_type, row)
            yield entity_json(entity_type, entity_id, state, registers, server)


def _joined_since(request: DeltaRequest, row: Mapping[str, Any]) -> bool:
    """A message of a channel the user joined (or re-joined) since the cursor: the device
    dropped it when the user left, or never had it, so it gets every register."""
    if request.since is None:
        return False
    member_since = row.get("member_since")
    return member_since is not None and member_since >= request.since


def _with_server_edits(
    applied_at: datetime,
    owner: uuid.UUID,
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
        applied_at=applied_at,
    )
    if new is None:
        return state
    adopted.append(rows_mod.register_row(owner, entity_type, entity_id, new))
    return new
