"""Translation between product rows, field-version rows and merge registers. No I/O."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from workers.sync.entities import ENTITY_TYPES
from workers.sync.hlc import SERVER_NODE, Hlc
from workers.sync.merge import TOMBSTONE, State, Version, is_deleted

FIELD_DEFAULTS: dict[str, Any] = {"status": "open"}  # what a create leaves unset, as the table
# Read-only columns sync never writes: the owner (set from the syncing user) and the ones the
# database fills itself.
NOT_WRITTEN = frozenset({"author_id", "created_at"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def datetime_to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def states_from_registers(
    loaded: Iterable[tuple[str, Mapping[str, list[Any]]]],
) -> dict[str, State]:
    """Entity states from `sync_repo.load_registers` rows: `{field: [hlc_ms, hlc_counter,
    node, value, applied_at_us]}` each."""
    moments: dict[int, datetime] = {}  # registers merged together share their applied_at

    def moment(us: int) -> datetime:
        found = moments.get(us)
        if found is None:
            found = moments[us] = EPOCH + timedelta(microseconds=us)
        return found

    return {
        entity_id: {
            field: Version(Hlc(ms, counter, node), value, moment(us))
            for field, (ms, counter, node, value, us) in registers.items()
        }
        for entity_id, registers in loaded
    }


def register_row(
    user_id: uuid.UUID, entity_type: str, entity_id: str, state: State
) -> dict[str, Any]:
    """The `sync_registers` row of one entity (its JSON form: exact, applied_at in µs)."""
    return {
        "user_id": user_id,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "registers": {
            field: [v.hlc.ms, v.hlc.counter, v.hlc.node, v.value, (v.applied_at - EPOCH) // _US]
            for field, v in state.items()
        },
    }


def field_values(entity_type: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The synced fields of a product row, in wire (JSON) form."""
    entity = ENTITY_TYPES[entity_type]
    return {name: spec.to_json(row[name]) for name, spec in entity.fields.items()}


def server_values(entity_type: str, row: Mapping[str, Any] | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in ENTITY_TYPES[entity_type].server_fields:
        value = row.get(name) if row is not None else None
        values[name] = value.isoformat() if isinstance(value, datetime) else _plain(value)
    return values


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, uuid.UUID) else value


def creation_defaults(entity_type: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A create writes every field: unset ones get the table's default, stamped as the create."""
    entity = ENTITY_TYPES[entity_type]
    return {name: fields.get(name, FIELD_DEFAULTS.get(name)) for name in entity.fields}


def product_row(
    entity_type: str,
    entity_id: str,
    owner: tuple[str, uuid.UUID],
    state: State,
    existing: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Column values for the upsert: register winners, the tombstone, derived columns."""
    entity = ENTITY_TYPES[entity_type]
    key = "id" if entity.uuid_ids else "key"
    row: dict[str, Any] = {key: uuid.UUID(entity_id) if entity.uuid_ids else entity_id}
    row[owner[0]] = owner[1]
    for name, spec in entity.fields.items():
        if name in state:
            value = state[name].value
            row[name] = datetime.fromisoformat(value) if spec.is_time and value else value
        else:
            row[name] = existing[name] if existing is not None else FIELD_DEFAULTS.get(name)
    tomb = state.get(TOMBSTONE)
    row["deleted_at"] = ms_to_datetime(tomb.hlc.ms) if tomb and is_deleted(state) else None
    for name in entity.server_fields:
        if name not in NOT_WRITTEN:
            row[name] = existing.get(name) if existing is not None else None
    if entity_type == "task":
        row["completed_at"] = _completed_at(state, existing)
    if entity_type == "message":
        row["edited_at"] = _edited_at(state)
    return row


def _edited_at(state: State) -> datetime | None:
    """When the winning body was written, if that was after the create (which stamped the
    channel, never written again)."""
    body, created = state.get("body"), state.get("channel_id")
    if body is None or created is None or body.hlc <= created.hlc:
        return None
    return ms_to_datetime(body.hlc.ms)


def server_state(entity_type: str, row: Mapping[str, Any]) -> State:
    """Registers of a read-only entity, from its row alone: every field stamped by the server
    at the row's last change, and a tombstone just after it when the row is deleted."""
    changed: datetime = row["updated_at"]
    stamp = Hlc(datetime_to_ms(changed), 0, SERVER_NODE)
    state = {f: Version(stamp, v, changed) for f, v in field_values(entity_type, row).items()}
    if row["deleted_at"] is not None:
        state[TOMBSTONE] = Version(stamp.after(SERVER_NODE), True, changed)
    return state


def _completed_at(state: State, existing: Mapping[str, Any] | None) -> datetime | None:
    status = state.get("status")
    if status is None or status.value != "done":
        return None
    if existing is not None and existing.get("completed_at") and existing["status"] == "done":
        return existing["completed_at"]  # type: ignore[no-any-return]
    return ms_to_datetime(status.hlc.ms)  # when the winning "done" was written
