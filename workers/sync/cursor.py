"""Opaque cursors: where a device's last delta ended. Clients store and send them back verbatim.

A cursor is base64url(JSON {"v", "u", "t"}): format version, user, and the change-tracking
watermark (microseconds since the epoch) of the sync that issued it. Nothing in it is secret;
a forged cursor can only make a device receive more or less of its own user's data, and the
user check stops one user's cursor from being used for another.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class Cursor:
    user_id: str
    watermark: datetime

    def encode(self) -> str:
        micros = (self.watermark - _EPOCH) // timedelta(microseconds=1)
        body = json.dumps({"v": VERSION, "u": self.user_id, "t": micros}, separators=(",", ":"))
        return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode(text: str, *, user_id: str) -> Cursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = json.loads(raw)
        version, owner, micros = body["v"], body["u"], body["t"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise InvalidCursor("cursor is not one this server issued") from None
    if version != VERSION or not isinstance(micros, int) or not isinstance(owner, str):
        raise InvalidCursor("cursor is not one this server issued")
    if owner != user_id:
        raise InvalidCursor("cursor belongs to another user")
    return Cursor(owner, _EPOCH + timedelta(microseconds=micros))


def needs_full_resync(cursor: Cursor | None, *, now: datetime, retention: timedelta) -> bool:
    """Without a cursor, or one older than tombstone retention, a delta could miss deletes."""
    return cursor is None or cursor.watermark < now - retention
