"""The wire format: the JSON message any service may publish onto `conveyor.jobs`.

Conveyor's own relay publishes exactly this too, so there is one path through the workers.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from shared.errors import InvalidMessage
from shared.messaging.names import Priority

WIRE_VERSION = 1
MAX_WIRE_BYTES = 1_048_576


class JobEnvelope(BaseModel):
    """Version 1 of the job message. Unknown fields are refused so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    kind: str = Field(
        min_length=1, max_length=100, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
    )
    user_id: str = Field(min_length=1, max_length=200)
    # The tenant the job runs under (its handler's transactions are scoped to it). A foreign
    # publisher's jobs belong to its registered tenant (shared/messaging/wire_auth.py).
    tenant_id: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    payload: dict[str, Any] = Field(default_factory=dict)
    job_id: uuid.UUID | None = None
    priority: Priority = Priority.NORMAL
    # A time without a zone is ambiguous across services: refused, never guessed.
    run_at: AwareDatetime | None = None

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def parse_envelope(body: bytes) -> JobEnvelope:
    """Parse a message body; raises InvalidMessage with a short reason code and detail."""
    if len(body) > MAX_WIRE_BYTES:
        raise InvalidMessage("message body too large", code="too_large", size=len(body))
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessage(f"body is not JSON: {exc}", code="not_json") from None
    if not isinstance(data, dict):
        raise InvalidMessage("body must be a JSON object", code="not_an_object")
    version = data.get("version")
    # `type(...) is int`: JSON `true` is a bool, which Python would compare equal to 1.
    if type(version) is not int or version != WIRE_VERSION:
        raise InvalidMessage(f"unsupported version {version!r}", code="unknown_version")
    try:
        return JobEnvelope.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidMessage(f"{where}: {first['msg']}", code="invalid_envelope") from None


def envelope_json_schema() -> dict[str, Any]:
    schema = JobEnvelope.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://conveyor.invalid/schemas/job-envelope-v1.json"
    return schema
