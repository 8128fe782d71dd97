"""A device's batch of changes: validated one by one, so one bad change never sinks the rest."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from workers.sync import hlc as hlc_mod
from workers.sync.entities import ENTITY_TYPES, ParsedChange, Rejected, canonical_id, parse_fields

CHANGE_KEYS = frozenset({"type", "id", "hlc", "fields", "delete"})
# Timestamps before this are not HLC readings of a real clock (2020-01-01T00:00:00Z).
MIN_HLC_MS = 1_577_836_800_000


@dataclass(frozen=True)
class Rejection:
    index: int
    code: str
    message: str
    entity_type: str | None = None
    entity_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "type": self.entity_type,
            "id": self.entity_id,
            "code": self.code,
            "message": self.message,
        }


@dataclass(frozen=True)
class ClockRule:
    """Changes stamped later than the server's clock plus `max_skew_ms` are rejected."""

    now_ms: int
    max_skew_ms: int


def parse_batch(
    raw_changes: Sequence[Any], *, node: str, enabled: Collection[str], clock: ClockRule
) -> tuple[list[ParsedChange], list[Rejection]]:
    accepted: list[ParsedChange] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(raw_changes):
        try:
            accepted.append(parse_change(index, raw, node=node, enabled=enabled, clock=clock))
        except Rejected as exc:
            kind, ident = _best_effort_ids(raw)
            rejected.append(Rejection(index, exc.code, exc.message, kind, ident))
    return accepted, rejected


def parse_change(
    index: int, raw: Any, *, node: str, enabled: Collection[str], clock: ClockRule
) -> ParsedChange:
    if not isinstance(raw, dict):
        raise Rejected("invalid_change", "a change is a JSON object")
    if extra := set(raw) - CHANGE_KEYS:
        raise Rejected("invalid_change", f"unknown keys: {', '.join(sorted(map(str, extra)))}")
    entity = ENTITY_TYPES.get(raw.get("type"))  # type: ignore[arg-type]
    if entity is None:
        raise Rejected("unknown_type", f"type must be one of {', '.join(ENTITY_TYPES)}")
    if entity.name not in enabled:
        raise Rejected("type_not_synced", f"{entity.name} is not enabled in the sync settings")
    if entity.read_only:
        raise Rejected("read_only_type", f"{entity.name} entities are changed by the back end only")
    entity_id = canonical_id(entity, raw.get("id"))
    stamp = _stamp(raw.get("hlc"), node, clock)
    delete = raw.get("delete", False)
    if delete is True:
        if "fields" in raw:
            raise Rejected("invalid_change", "a delete carries no fields")
        return ParsedChange(index, entity.name, entity_id, stamp, {}, True)
    if delete is not False:
        raise Rejected("invalid_change", "delete must be true or false")
    fields = parse_fields(entity, raw.get("fields"))
    return ParsedChange(index, entity.name, entity_id, stamp, fields, False)


def _stamp(raw: Any, node: str, clock: ClockRule) -> hlc_mod.Hlc:
    if not isinstance(raw, str):
        raise Rejected("invalid_hlc", "hlc must be a string '<milliseconds>-<counter>'")
    try:
        stamp = hlc_mod.parse(raw, node)
    except ValueError as exc:
        raise Rejected("invalid_hlc", str(exc)) from None
    if stamp.ms < MIN_HLC_MS:
        raise Rejected("invalid_hlc", "hlc milliseconds are before 2020: not a clock reading")
    if stamp.ms > clock.now_ms + clock.max_skew_ms:
        ahead = (stamp.ms - clock.now_ms) / 1000
        raise Rejected(
            "clock_skew",
            f"hlc is {ahead:.0f} s ahead of the server clock (limit "
            f"{clock.max_skew_ms / 1000:.0f} s): fix the clock, re-stamp and resend",
        )
    return stamp


def _best_effort_ids(raw: Any) -> tuple[str | None, str | None]:
    if not isinstance(raw, dict):
        return None, None
    kind, ident = raw.get("type"), raw.get("id")
    return (
        kind if isinstance(kind, str) else None,
        ident[:200] if isinstance(ident, str) else None,
    )
