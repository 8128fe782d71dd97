"""Who may write a message and which of its fields may change; the order replies are written
in. No I/O: the caller loads the memberships and channels these rules look at.

- A device writes messages as its user (the author). Creating one needs a live membership of
  its channel; editing the body or deleting needs authorship *and* a live membership.
- `channel_id` and `reply_to_id` are set by the create and never change; a reply must point at
  a message of the same channel (one that exists, or one created earlier in the batch).
- Another user's message in a channel the user can see is refused with `not_author`; a message
  in a channel the user cannot see is `unknown_entity`, as if it did not exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from workers.sync.entities import ENTITY_TYPES, ParsedChange, Rejected
from workers.sync.merge import State

CREATE_ONLY = tuple(n for n, spec in ENTITY_TYPES["message"].fields.items() if spec.create_only)


@dataclass(frozen=True)
class MessageScope:
    user_id: str
    member_of: frozenset[str]  # channels the user is a live member of
    # message id -> channel id: existing ones, plus this batch's creates once accepted
    channels: dict[str, str]


def check(
    change: ParsedChange, row: Mapping[str, Any] | None, state: State | None, scope: MessageScope
) -> Rejected | None:
    """Why this change may not be applied, or None."""
    if row is not None:
        author, channel = str(row["author_id"]), str(row["channel_id"])
        if channel not in scope.member_of:
            if author != scope.user_id:
                return Rejected("unknown_entity", "no such entity")
            return Rejected("not_a_member", "you are no longer a member of this channel")
        if author != scope.user_id:
            return Rejected("not_author", "only the author of a message can edit or delete it")
        current = {n: _text(row[n]) for n in CREATE_ONLY}
    else:
        current = {n: state[n].value for n in CREATE_ONLY if state and n in state}
    for name in CREATE_ONLY:
        if name in change.fields and name in current and change.fields[name] != current[name]:
            return Rejected("immutable_field", f"{name} is set when a message is created")
    if row is None and not state and not change.delete:
        return _check_create(change, scope)
    return None


def _check_create(change: ParsedChange, scope: MessageScope) -> Rejected | None:
    channel = change.fields.get("channel_id")
    if channel is None:
        return None  # the create lacks a required field: `missing_fields` says so
    if channel not in scope.member_of:
        return Rejected("not_a_member", "you are not a member of this channel")
    reply_to = change.fields.get("reply_to_id")
    if reply_to is not None and scope.channels.get(reply_to) != channel:
        return Rejected("invalid_value", "reply_to_id: not a message of this channel")
    return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def reply_depth(changes: Iterable[ParsedChange]) -> dict[str, int]:
    """How many of this batch's messages each one replies through: writing messages in this
    order writes a reply's target first (the reply_to_id foreign key), whatever the chunking."""
    parent = {
        c.entity_id: c.fields["reply_to_id"]
        for c in changes
        if c.entity_type == "message" and c.fields.get("reply_to_id") is not None
    }
    depth: dict[str, int] = {}
    for start in parent:
        hops, seen, node = 0, {start}, start
        while (node := parent.get(node)) is not None and node not in seen:  # type: ignore[assignment]
            seen.add(node)
            hops += 1
        depth[start] = hops
    return depth
