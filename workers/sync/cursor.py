"""Signed, opaque cursors: where a device's last delta ended. Clients store them verbatim.

A cursor is `base64url(JSON body) "." base64url(HMAC-SHA256(key, first part))`. The body holds
the format version `v`, the signing key's id `k`, the user `u`, the change-tracking watermark
`t` (microseconds since the epoch) and, in the middle of a paged delta, `p`: where the next
page starts. The HMAC key is derived from a master key of the project's key ring
(`CONVEYOR_MASTER_KEYS`, shared/crypto.py), never the master key itself; the first key signs,
every key in the ring verifies, so rotation keeps issued cursors valid.

Decoding refuses (InvalidCursor → 422 `invalid_cursor`) a cursor that is malformed, whose
signature does not match (forged or edited), or that belongs to another user. A cursor this
server can no longer check — signed with a key since removed from the ring, or an unsigned
cursor from before signing (format 1) — decodes to None: the device gets a full resync, which
is always correct and gives it nothing it could not get without a cursor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.crypto import KeyRing

VERSION = 2
_LABEL = b"conveyor/sync-cursor/v2"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_LENGTH = 512


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True)
class CursorKeys:
    """HMAC keys derived from the key ring, by key id; the first one signs."""

    keys: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_ring(cls, ring: KeyRing) -> CursorKeys:
        derived = ((kid, hmac.new(key, _LABEL, hashlib.sha256).digest()) for kid, key in ring.keys)
        return cls(tuple(derived))

    def sign(self, body: bytes) -> str:
        return _mac(self.keys[0][1], body)

    def verify(self, kid: str, body: bytes, signature: str) -> bool | None:
        """True/False for a key this ring holds; None for a key id it no longer has."""
        key = dict(self.keys).get(kid)
        if key is None:
            return None
        # As bytes: compare_digest refuses str with non-ASCII characters (TypeError → a 500).
        return hmac.compare_digest(_mac(key, body).encode(), signature.encode())


@dataclass(frozen=True)
class Resume:
    """Where a paged delta stopped: the next page continues after this position."""

    since: datetime | None  # the delta's lower bound; None: a full resync in progress
    entity_type: str
    updated_at: datetime
    key: str


@dataclass(frozen=True)
class Cursor:
    user_id: str
    watermark: datetime  # a paged delta: the watermark the last page's cursor will carry
    resume: Resume | None = None

    def encode(self, keys: CursorKeys) -> str:
        body: dict[str, Any] = {"v": VERSION, "u": self.user_id, "t": _micros(self.watermark)}
        if self.resume is not None:
            r = self.resume
            since = None if r.since is None else _micros(r.since)
            body["p"] = [since, r.entity_type, _micros(r.updated_at), r.key]
        body["k"] = keys.keys[0][0]
        encoded = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{encoded}.{keys.sign(encoded.encode())}"


def decode(text: str, *, user_id: str, keys: CursorKeys) -> Cursor | None:
    """The cursor; None when it cannot be checked any more (full resync); InvalidCursor if
    it is forged, edited, malformed or another user's."""
    body = _body(text)
    if body.get("v") == 1 and "k" not in body:
        return None  # issued before cursors were signed
    encoded, _, signature = text.partition(".")
    kid = body.get("k")
    if body.get("v") != VERSION or not isinstance(kid, str) or not signature:
        raise InvalidCursor("cursor is not one this server issued")
    verdict = keys.verify(kid, encoded.encode(), signature)
    if verdict is None:
        return None  # signed with a key that has left the ring
    if not verdict:
        raise InvalidCursor("cursor signature does not match: it was edited or forged")
    try:
        cursor = _cursor(body)
    except (KeyError, TypeError, ValueError, OverflowError):
        raise InvalidCursor("cursor is not one this server issued") from None
    if cursor.user_id != user_id:
        raise InvalidCursor("cursor belongs to another user")
    return cursor


@dataclass(frozen=True)
class Plan:
    """What the delta of one sync covers."""

    since: datetime | None  # rows changed at or after this; None: every live entity
    start: Resume | None  # continue a paged delta here
    full_resync: bool  # the first page of a full resync: the device replaces its store
    watermark: datetime | None  # the cursor the last page will carry; None: take it now


def plan(cursor: Cursor | None, *, now: datetime, retention: timedelta) -> Plan:
    """Without a cursor, or with one older than tombstone retention, a delta could miss
    deletes: full resync. A paged cursor continues its delta, unless it has gone stale too."""
    if cursor is None:
        return Plan(None, None, True, None)
    resume = cursor.resume
    since = cursor.watermark if resume is None else resume.since
    if resume is not None and since is None:
        if cursor.watermark < now - retention:
            # Its last page would carry a watermark already too old for a delta: the next
            # sync would start over anyway, so start over now.
            return Plan(None, None, True, None)
        return Plan(None, resume, False, cursor.watermark)  # the later pages of a full resync
    if since is None or since < now - retention:
        return Plan(None, None, True, None)
    return Plan(since, resume, False, None if resume is None else cursor.watermark)


def needs_full_resync(cursor: Cursor | None, *, now: datetime, retention: timedelta) -> bool:
    return plan(cursor, now=now, retention=retention).full_resync


def _body(text: str) -> dict[str, Any]:
    if len(text) > _MAX_LENGTH:
        raise InvalidCursor("cursor is not one this server issued")
    encoded = text.partition(".")[0]
    try:
        body = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (binascii.Error, ValueError, TypeError):
        raise InvalidCursor("cursor is not one this server issued") from None
    if not isinstance(body, dict):
        raise InvalidCursor("cursor is not one this server issued")
    return body


def _cursor(body: dict[str, Any]) -> Cursor:
    owner, micros, page = body["u"], body["t"], body.get("p")
    if not isinstance(owner, str) or not isinstance(micros, int):
        raise ValueError("bad cursor body")
    resume = None
    if page is not None:
        since, entity_type, after, key = page
        if not isinstance(entity_type, str) or not isinstance(key, str):
            raise ValueError("bad cursor page")
        start = None if since is None else _moment(since)
        resume = Resume(start, entity_type, _moment(after), key)
    return Cursor(owner, _moment(micros), resume)


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def _moment(micros: Any) -> datetime:
    if not isinstance(micros, int):
        raise ValueError("not a timestamp")
    return EPOCH + timedelta(microseconds=micros)


def _mac(key: bytes, body: bytes) -> str:
    return _b64(hmac.new(key, body, hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
