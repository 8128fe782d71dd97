"""Merge a validated batch into the database: load what it touches, merge, write back once.

Everything is read and written in bulk per entity type (one query for the rows, one for their
registers, one upsert each), which is what makes a 10,000-change batch cheap.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from shared.db.repos import sync as sync_repo
from workers.sync import messages
from workers.sync import rows as rows_mod
from workers.sync.batch import Rejection
from workers.sync.entities import ENTITY_TYPES, ParsedChange
from workers.sync.hlc import Hlc
from workers.sync.merge import Change, Lost, State, adopt_server_edits, apply


@dataclass
class Outcome:
    applied: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    touched: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    written: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    newest: Hlc | None = None


@dataclass(frozen=True)
class MergeContext:
    user_id: uuid.UUID
    device_id: uuid.UUID
    applied_at: datetime  # this transaction's start: the clock cursors are compared with
    seen_until: datetime | None


# Entities merged per round trip: large enough to amortise the queries, small enough to bound
# a worker's memory whatever the batch size (10,000-change batch: ~100 MB -> ~40 MB peak).
CHUNK_ENTITIES = 2_000


def merge_batch(session: Session, ctx: MergeContext, changes: Sequence[ParsedChange]) -> Outcome:
    outcome = Outcome()
    by_entity: dict[tuple[str, str], list[ParsedChange]] = defaultdict(list)
    for change in changes:  # batch order is kept within each entity
        by_entity[(change.entity_type, change.entity_id)].append(change)
    depth = messages.reply_depth(changes)
    keys = sorted(by_entity, key=lambda k: (k[0], depth.get(k[1], 0), k[1]))
    for start in range(0, len(keys), CHUNK_ENTITIES):
        chunk = keys[start : start + CHUNK_ENTITIES]
        for entity_type in sorted({t for t, _ in chunk}):
            group = [c for key in chunk if key[0] == entity_type for c in by_entity[key]]
            _merge_type(session, ctx, entity_type, group, outcome)
    return outcome


def _message_scope(
    session: Session,
    ctx: MergeContext,
    changes: list[ParsedChange],
    rows: Mapping[str, Mapping[str, Any]],
) -> messages.MessageScope:
    """Channels the user may write to, and the channel of every existing reply target. What
    the database says wins; a message this batch creates joins `channels` only once its create
    is accepted (see _merge_type), so a reply cannot point into a channel the user cannot see
    or at a message whose create was refused (its foreign key would fail the whole sync)."""
    named = {str(r["channel_id"]) for r in rows.values()} | {
        c.fields["channel_id"] for c in changes if "channel_id" in c.fields
    }
    replies = {c.fields["reply_to_id"] for c in changes if c.fields.get("reply_to_id")}
    return messages.MessageScope(
        str(ctx.user_id),
        frozenset(sync_repo.live_channels(session, ctx.user_id, sorted(named))),
        dict(sync_repo.message_channels(session, sorted(replies))),
    )


def _merge_type(
    session: Session,
    ctx: MergeContext,
    entity_type: str,
    changes: list[ParsedChange],
    outcome: Outcome,
) -> None:
    ids = sorted({c.entity_id for c in changes})
    rows = sync_repo.load_rows(session, entity_type, ctx.user_id, ids, for_update=True)
    before = rows_mod.states_from_registers(
        sync_repo.load_registers(session, ctx.user_id, entity_type, ids)
    )
    owner = sync_repo.PRODUCT_TABLES[entity_type].owner
    scope = None
    if entity_type == "message":
        scope = _message_scope(session, ctx, changes, rows)
    states: dict[str, State] = {}
    for change in changes:
        row = rows.get(change.entity_id)
        if scope is not None:
            refused = messages.check(change, row, states.get(change.entity_id), scope)
            if refused is not None:
                outcome.rejected.append(_reject(change, refused.code, refused.message))
                continue
        elif row is not None and row[owner] != ctx.user_id:
            outcome.rejected.append(_reject(change, "unknown_entity", "no such entity"))
            continue
        if change.entity_id not in states:
            states[change.entity_id] = _current(entity_type, row, before, change, ctx)
        applied = outcome.applied
        _merge_one(ctx, entity_type, change, states, outcome, exists=row is not None)
        created = row is None and outcome.applied > applied
        if scope is not None and created and "channel_id" in change.fields:
            # Replies later in this batch (written after it: reply_depth) may point at it.
            scope.channels.setdefault(change.entity_id, change.fields["channel_id"])
    outcome.written[entity_type].update(_write(session, ctx, entity_type, states, before, rows))


def _current(
    entity_type: str,
    row: Mapping[str, Any] | None,
    before: Mapping[str, State],
    change: ParsedChange,
    ctx: MergeContext,
) -> State:
    """The entity's registers, with any edit made outside sync folded in first."""
    state = dict(before.get(change.entity_id, {}))
    if row is None:
        return state
    adopted = adopt_server_edits(
        state,
        rows_mod.field_values(entity_type, row),
        row_deleted=row["deleted_at"] is not None,
        edited_ms=rows_mod.datetime_to_ms(row["updated_at"]),
        applied_at=ctx.applied_at,
    )
    return adopted if adopted is not None else state


def _merge_one(
    ctx: MergeContext,
    entity_type: str,
    change: ParsedChange,
    states: dict[str, State],
    outcome: Outcome,
    *,
    exists: bool,
) -> None:
    state = states[change.entity_id]
    fields = change.fields
    if not exists and not state:
        if change.delete:
            outcome.rejected.append(_reject(change, "unknown_entity", "delete of an unknown id"))
            return
        if missing := ENTITY_TYPES[entity_type].required() - set(fields):
            message = f"creating a {entity_type} needs {', '.join(sorted(missing))}"
            outcome.rejected.append(_reject(change, "missing_fields", message))
            return
        fields = rows_mod.creation_defaults(entity_type, fields)
    merged = Change(change.hlc, fields, delete=change.delete)
    states[change.entity_id], lost = apply(
        state, merged, applied_at=ctx.applied_at, seen_until=ctx.seen_until
    )
    outcome.applied += 1
    outcome.touched[entity_type].add(change.entity_id)
    outcome.newest = max(change.hlc, outcome.newest) if outcome.newest else change.hlc
    outcome.conflicts.extend(_conflict(ctx, entity_type, change.entity_id, x) for x in lost)


def _write(
    session: Session,
    ctx: MergeContext,
    entity_type: str,
    states: Mapping[str, State],
    before: Mapping[str, State],
    rows: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """Write the entities whose registers changed; returns their ids."""
    owner = (sync_repo.PRODUCT_TABLES[entity_type].owner, ctx.user_id)
    registers: list[dict[str, Any]] = []
    products: list[dict[str, Any]] = []
    for entity_id, state in states.items():
        if state != before.get(entity_id, {}):
            registers.append(rows_mod.register_row(ctx.user_id, entity_type, entity_id, state))
            existing = rows.get(entity_id)
            products.append(rows_mod.product_row(entity_type, entity_id, owner, state, existing))
    sync_repo.upsert_rows(session, entity_type, products)
    sync_repo.upsert_registers(session, registers)
    return [str(row[sync_repo.PRODUCT_TABLES[entity_type].key]) for row in products]


def _reject(change: ParsedChange, code: str, message: str) -> Rejection:
    return Rejection(change.index, code, message, change.entity_type, change.entity_id)


def _conflict(ctx: MergeContext, entity_type: str, entity_id: str, lost: Lost) -> dict[str, Any]:
    return {
        "user_id": ctx.user_id,
        "device_id": ctx.device_id,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "field": lost.field,
        "lost_value": lost.value,
        "lost_hlc": lost.hlc.wire(),
        "lost_node": lost.hlc.node,
        "winner_hlc": lost.winner.wire(),
        "winner_node": lost.winner.node,
        "reason": lost.reason.value,
    }
