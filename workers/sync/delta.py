"""What a device is sent: the registers it does not already know, in their wire form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workers.sync.hlc import Hlc
from workers.sync.merge import TOMBSTONE, State, Version, is_deleted


def registers_for(
    state: Mapping[str, Version], node: str, *, full: bool, whole: bool = False
) -> State | None:
    """The registers to send `node`: all of them on a full resync (live entities only), all of
    them too for an entity the device may have dropped or missed (`whole`: a message of a
    channel joined since its cursor, deleted ones included, since the device may still hold
    them from before a leave it never heard of), otherwise those another writer won (a device
    knows its own writes)."""
    if full:
        return None if is_deleted(state) else dict(state)
    if whole:
        return dict(state)
    mine = {f: v for f, v in state.items() if v.hlc.node != node}
    return mine or None


def stamp(hlc: Hlc) -> dict[str, str]:
    return {"hlc": hlc.wire(), "node": hlc.node}


def entity_json(
    entity_type: str,
    entity_id: str,
    state: Mapping[str, Version],
    registers: Mapping[str, Version],
    server_fields: Mapping[str, Any],
) -> dict[str, Any]:
    """One delta entry; `deleted` is computed from the whole state, not just what is sent."""
    tomb = registers.get(TOMBSTONE)
    return {
        "type": entity_type,
        "id": entity_id,
        "deleted": is_deleted(state),
        "fields": {
            f: {"value": v.value, **stamp(v.hlc)} for f, v in registers.items() if f != TOMBSTONE
        },
        "tombstone": stamp(tomb.hlc) if tomb is not None else None,
        "server_fields": dict(server_fields),
    }
