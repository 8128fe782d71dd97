"""Opaque keyset cursors `(created_at, id)` for the newest-first lists (jobs, files)."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from shared.errors import PermanentError


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, row_id = raw.split("|")
        return datetime.fromisoformat(created), uuid.UUID(row_id)
    except (ValueError, UnicodeDecodeError):
        raise PermanentError("malformed cursor", code="bad_cursor") from None


def encode_seq_cursor(at: datetime, seq: int) -> str:
    """`(at, id)` for lists keyed by a bigint identity (the audit log)."""
    raw = f"{at.isoformat()}|{seq}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_seq_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, seq = raw.split("|")
        return datetime.fromisoformat(at), int(seq)
    except (ValueError, UnicodeDecodeError):
        raise PermanentError("malformed cursor", code="bad_cursor") from None
