"""Turn a raw AMQP body into the Dramatiq message that runs it (or that dead-letters it)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Container
from typing import Any

from shared.errors import InvalidMessage
from shared.messaging.contract import parse_envelope
from shared.messaging.names import REJECT_ACTOR

# Stable ids for id-less foreign messages that carry an AMQP message_id (publisher retries).
FOREIGN_ID_NAMESPACE = uuid.UUID("6f1c1f7e-3a55-4d6b-9a57-1c0f6f0b2d11")


def to_dramatiq(
    body: bytes,
    *,
    queue: str,
    redelivered: bool,
    known_kinds: Container[str],
    amqp_message_id: str | None = None,
) -> dict[str, Any]:
    """Never raises: anything unusable becomes a message for the reject actor."""
    try:
        envelope = parse_envelope(body)
    except InvalidMessage as exc:
        return _reject(body, queue=queue, reason=exc.code, detail=exc.message)
    if envelope.kind not in known_kinds:
        return _reject(body, queue=queue, reason="unknown_kind", detail=envelope.kind)
    if envelope.job_id is None:
        job_id = (
            uuid.uuid5(FOREIGN_ID_NAMESPACE, amqp_message_id) if amqp_message_id else uuid.uuid4()
        )
        envelope = envelope.model_copy(update={"job_id": job_id})
    return _message(
        queue,
        envelope.kind,
        {"envelope": envelope.model_dump(mode="json"), "redelivered": redelivered},
    )


def _reject(body: bytes, *, queue: str, reason: str, detail: str) -> dict[str, Any]:
    kwargs = {
        "queue": queue,
        "reason": reason,
        "detail": detail[:1000],
        "body_b64": base64.b64encode(body).decode(),
    }
    return _message(queue, REJECT_ACTOR, kwargs)


def _message(queue: str, actor: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        "queue_name": queue,
        "actor_name": actor,
        "args": [],
        "kwargs": kwargs,
        "options": {},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()
