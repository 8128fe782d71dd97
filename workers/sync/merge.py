"""Per-field last-writer-wins with tombstones: the merge rule, with no I/O.

An entity is a set of registers: one per field, plus `TOMBSTONE` for deletes. Each register
keeps the write with the greatest HLC (ties are impossible: the HLC includes the writer). An
entity is deleted when its tombstone is later than every field write, so a delete beats older
edits and loses to newer ones, and the outcome does not depend on arrival order.

Nothing accepted is silently lost: a write that ends up superseded or hidden by a *concurrent*
write of another writer becomes a `Lost` record (the conflict log). "Concurrent" means the
winner's device had not been sent the loser: the loser was applied at or after the cursor the
winner's batch carried (`seen_until`). A device overwriting what it had already received is an
ordinary edit, not a conflict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from workers.sync.hlc import SERVER_NODE, Hlc

TOMBSTONE = "_deleted"


class LossReason(StrEnum):
    SUPERSEDED = "superseded"  # a later write to the same field won
    HIDDEN_BY_DELETE = "hidden_by_delete"  # the entity was deleted later
    DELETE_OVERRIDDEN = "delete_overridden"  # the delete lost to a later edit


class Version(NamedTuple):
    hlc: Hlc
    value: Any  # JSON value; True for a tombstone
    applied_at: datetime  # when the server merged it (compared with cursors)


@dataclass(frozen=True)
class Change:
    """One device edit of one entity: field values, or a delete (`fields` empty)."""

    hlc: Hlc
    fields: Mapping[str, Any]
    delete: bool = False


@dataclass(frozen=True)
class Lost:
    field: str
    value: Any
    hlc: Hlc
    winner: Hlc
    reason: LossReason


State = dict[str, Version]


def is_deleted(state: Mapping[str, Version]) -> bool:
    tomb = state.get(TOMBSTONE)
    if tomb is None:
        return False
    return all(tomb.hlc > v.hlc for f, v in state.items() if f != TOMBSTONE)


def newest_field(state: Mapping[str, Version]) -> Hlc | None:
    hlcs = [v.hlc for f, v in state.items() if f != TOMBSTONE]
    return max(hlcs) if hlcs else None


def visible(state: Mapping[str, Version]) -> dict[str, Any] | None:
    """Field values as devices should show them; None for a deleted entity."""
    if is_deleted(state):
        return None
    return {f: v.value for f, v in state.items() if f != TOMBSTONE}


def apply(
    state: Mapping[str, Version],
    change: Change,
    *,
    applied_at: datetime,
    seen_until: datetime | None,
) -> tuple[State, list[Lost]]:
    """Merge one change into an entity; returns the new state and what lost (the conflict log).

    Idempotent (a duplicate changes nothing and logs nothing) and commutative up to the log.
    """
    writes = {TOMBSTONE: True} if change.delete else dict(change.fields)
    new: State = dict(state)
    lost: list[Lost] = []
    for field, value in writes.items():
        current = new.get(field)
        if current is None or change.hlc > current.hlc:
            new[field] = Version(change.hlc, value, applied_at)
            if (
                current is not None
                and field != TOMBSTONE
                and current.value != value  # an equal value loses nothing
                and _unseen(current, change.hlc, seen_until)
            ):
                lost.append(_lost(field, current, change.hlc, LossReason.SUPERSEDED))
        elif (
            change.hlc < current.hlc
            and field != TOMBSTONE
            and current.hlc.node != change.hlc.node
            and current.value != value
        ):
            # The incoming write is older: its writer had not seen the winner (or it would
            # have stamped later), so this is a real conflict.
            lost.append(Lost(field, value, change.hlc, current.hlc, LossReason.SUPERSEDED))
    lost.extend(_visibility_losses(state, new, change, writes, seen_until))
    return new, lost


def _visibility_losses(
    before: Mapping[str, Version],
    after: Mapping[str, Version],
    change: Change,
    writes: Mapping[str, Any],
    seen_until: datetime | None,
) -> list[Lost]:
    was, now = is_deleted(before), is_deleted(after)
    tomb = after.get(TOMBSTONE)
    if change.delete and not now:
        winner = newest_field(after)
        assert winner is not None
        if winner.node != change.hlc.node and (tomb is None or tomb.hlc == change.hlc):
            return [Lost(TOMBSTONE, True, change.hlc, winner, LossReason.DELETE_OVERRIDDEN)]
        return []
    if change.delete and now and not was:
        return [
            _lost(f, v, change.hlc, LossReason.HIDDEN_BY_DELETE)
            for f, v in before.items()
            if f != TOMBSTONE and _unseen(v, change.hlc, seen_until)
        ]
    if not change.delete and was and not now:
        old = before[TOMBSTONE]
        if _unseen(old, change.hlc, seen_until):
            return [_lost(TOMBSTONE, old, change.hlc, LossReason.DELETE_OVERRIDDEN)]
    if not change.delete and now and tomb is not None and tomb.hlc.node != change.hlc.node:
        return [
            Lost(f, value, change.hlc, tomb.hlc, LossReason.HIDDEN_BY_DELETE)
            for f, value in writes.items()
            if after[f].hlc == change.hlc
        ]
    return []


def _unseen(loser: Version, winner: Hlc, seen_until: datetime | None) -> bool:
    """True when `winner`'s device had not been sent `loser` before writing."""
    if loser.hlc.node == winner.node:
        return False
    return seen_until is None or loser.applied_at >= seen_until


def _lost(field: str, version: Version, winner: Hlc, reason: LossReason) -> Lost:
    return Lost(field, version.value, version.hlc, winner, reason)


def adopt_server_edits(
    state: Mapping[str, Version],
    row: Mapping[str, Any] | None,
    *,
    row_deleted: bool,
    edited_ms: int,
    applied_at: datetime,
) -> State | None:
    """Fold writes made outside sync (other jobs, restore) into the registers.

    `row` holds the product row's current field values (JSON form). A field whose value differs
    from its register was written by the server: it gets a server timestamp from the row's
    `updated_at`, bumped past the register it overwrote (the server saw it). Returns the new
    state, or None when the registers already describe the row.
    """
    if row is None:
        return None
    new: State = dict(state)
    for field, value in row.items():
        current = new.get(field)
        if current is None or current.value != value:
            new[field] = Version(_server_hlc(edited_ms, [current]), value, applied_at)
    if row_deleted and not is_deleted(new):
        new[TOMBSTONE] = Version(_server_hlc(edited_ms, new.values()), True, applied_at)
    elif not row_deleted and is_deleted(new):
        stamp = _server_hlc(edited_ms, new.values())  # restored: every field rewritten later
        new = {f: v._replace(hlc=stamp, applied_at=applied_at) for f, v in new.items()}
        new[TOMBSTONE] = state[TOMBSTONE]
    return new if new != dict(state) else None


def _server_hlc(edited_ms: int, overwritten: Iterable[Version | None]) -> Hlc:
    stamp = Hlc(edited_ms, 0, SERVER_NODE)
    for version in overwritten:
        if version is not None and version.hlc >= stamp:
            stamp = version.hlc.after(SERVER_NODE)
    return stamp
