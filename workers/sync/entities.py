"""The entity types devices sync, their fields, and how one change is validated.

Values travel as JSON: text as strings, times as ISO 8601 strings (normalised to UTC, e.g.
"2026-11-30T12:00:00+00:00"), ids as lowercase UUID strings, settings as any JSON value.
Columns the server derives (a task's `completed_at`, a message's `author_id`) or that point
at data devices do not write (`source_message_id`) are read-only: they appear in deltas under
`server_fields`, never in changes. `create_only` fields are set when an entity is created and
never change (a message's channel). A `read_only` type (channels: the user's memberships) is
only ever sent to devices; changes to it are rejected.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, StringConstraints, TypeAdapter

from workers.sync.hlc import Hlc


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text cannot contain NUL characters")
    return value


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _small_json(value: Any) -> Any:
    if len(json.dumps(value)) > SETTING_MAX_BYTES:
        raise ValueError(f"setting value larger than {SETTING_MAX_BYTES} bytes")
    return value


SETTING_MAX_BYTES = 65_536
MESSAGE_MAX_CHARS = 40_000


def _text(max_length: int | None, *, nullable: bool) -> TypeAdapter[Any]:
    text = Annotated[
        str,
        StringConstraints(min_length=0 if nullable else 1, max_length=max_length),
        AfterValidator(_no_nul),
    ]
    return TypeAdapter(text | None if nullable else text)


def _uuid(*, nullable: bool) -> TypeAdapter[Any]:
    ident = Annotated[uuid.UUID, AfterValidator(str)]
    return TypeAdapter(ident | None if nullable else ident)


def _time(*, nullable: bool) -> TypeAdapter[Any]:
    moment = Annotated[AwareDatetime, AfterValidator(_utc)]
    return TypeAdapter(moment | None if nullable else moment)


@dataclass(frozen=True)
class FieldSpec:
    adapter: TypeAdapter[Any]
    required: bool = False  # must be present when a change creates the entity
    is_time: bool = False
    create_only: bool = False  # set by the create, never changed afterwards

    def to_json(self, column_value: Any) -> Any:
        """A column value read from the database in its wire form."""
        if self.is_time and column_value is not None:
            return _utc(column_value)
        if isinstance(column_value, uuid.UUID):
            return str(column_value)
        return column_value


@dataclass(frozen=True)
class EntityType:
    name: str
    fields: Mapping[str, FieldSpec]
    server_fields: tuple[str, ...] = ()
    uuid_ids: bool = True  # settings are keyed by name instead
    read_only: bool = False  # sent to devices, never written by them

    def required(self) -> set[str]:
        return {name for name, spec in self.fields.items() if spec.required}


ENTITY_TYPES: dict[str, EntityType] = {
    "contact": EntityType(
        "contact",
        {
            "name": FieldSpec(_text(200, nullable=False), required=True),
            "email": FieldSpec(_text(320, nullable=True)),
            "phone": FieldSpec(_text(50, nullable=True)),
            "company": FieldSpec(_text(200, nullable=True)),
            "notes": FieldSpec(_text(None, nullable=True)),
        },
    ),
    "task": EntityType(
        "task",
        {
            "title": FieldSpec(_text(500, nullable=False), required=True),
            "notes": FieldSpec(_text(None, nullable=True)),
            "status": FieldSpec(TypeAdapter(Literal["open", "done"])),
            "due_at": FieldSpec(_time(nullable=True), is_time=True),
        },
        server_fields=("completed_at", "source_message_id"),
    ),
    "decision": EntityType(
        "decision",
        {
            "title": FieldSpec(_text(500, nullable=False), required=True),
            "outcome": FieldSpec(_text(None, nullable=False), required=True),
            "rationale": FieldSpec(_text(None, nullable=True)),
            "decided_at": FieldSpec(_time(nullable=False), required=True, is_time=True),
        },
        server_fields=("channel_id",),
    ),
    "setting": EntityType(
        "setting",
        {"value": FieldSpec(TypeAdapter(Annotated[Any, AfterValidator(_small_json)]), True)},
        uuid_ids=False,
    ),
    # The user's view of a channel they belong to: the channel's fields plus their membership.
    # Leaving (or the channel's deletion) tombstones it; re-joining revives it.
    "channel": EntityType(
        "channel",
        {
            "name": FieldSpec(_text(200, nullable=True)),
            "kind": FieldSpec(TypeAdapter(Literal["direct", "group"])),
            "topic": FieldSpec(_text(None, nullable=True)),
            "owner_id": FieldSpec(_uuid(nullable=False)),
            "role": FieldSpec(TypeAdapter(Literal["owner", "admin", "member"])),
            "joined_at": FieldSpec(_time(nullable=False), is_time=True),
        },
        read_only=True,
    ),
    "message": EntityType(
        "message",
        {
            "channel_id": FieldSpec(_uuid(nullable=False), required=True, create_only=True),
            "body": FieldSpec(_text(MESSAGE_MAX_CHARS, nullable=False), required=True),
            "reply_to_id": FieldSpec(_uuid(nullable=True), create_only=True),
        },
        server_fields=("author_id", "edited_at", "created_at"),
    ),
}
SETTING_KEY = TypeAdapter(
    Annotated[str, StringConstraints(min_length=1, max_length=100), AfterValidator(_no_nul)]
)
MAX_CHANGE_FIELDS = 32


class Rejected(ValueError):
    """One change refused; the rest of the batch still applies."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ParsedChange:
    index: int
    entity_type: str
    entity_id: str
    hlc: Hlc
    fields: dict[str, Any]
    delete: bool


def canonical_id(entity: EntityType, raw: object) -> str:
    if not isinstance(raw, str):
        raise Rejected("invalid_id", "id must be a string")
    if not entity.uuid_ids:
        return str(SETTING_KEY.validate_python(raw))
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise Rejected("invalid_id", f"{entity.name} ids are UUIDs, got {raw[:60]!r}") from None


def parse_fields(entity: EntityType, raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw:
        raise Rejected("invalid_change", "fields must be a non-empty object")
    if len(raw) > MAX_CHANGE_FIELDS:
        raise Rejected("invalid_change", "too many fields")
    out: dict[str, Any] = {}
    for name, value in raw.items():
        spec = entity.fields.get(name)
        if spec is None:
            known = ", ".join(entity.fields)
            raise Rejected(
                "unknown_field", f"{entity.name} has no writable field {name!r} ({known})"
            )
        try:
            out[name] = spec.adapter.validate_python(value)
        except ValueError as exc:
            message = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
            raise Rejected("invalid_value", f"{name}: {message}") from None
    return out
