"""The backup manifest: what a backup holds, sealed so tampering is detected.

Sealed document (JSON, stored in S3 beside the data object and in the `backups` row):
  {"manifest": {...}, "mac": hex HMAC-SHA256, "key": {"kid": ..., "wrapped": base64}}
The data key is random per backup attempt. Two subkeys come from it with HKDF-SHA256 (no
salt): info "conveyor-backup-chunks-v1" encrypts chunks, info "conveyor-backup-manifest-v1"
authenticates the manifest: mac = HMAC(mac_key, MAC_PREFIX || canonical(manifest)).
The data key itself is wrapped by the key ring's current master key (AES-256-GCM, associated
data WRAP_PREFIX || backup id), so re-wrapping after a rotation touches only "key".
canonical() is JSON with sorted keys and no whitespace; digest() = sha256(canonical) is what
a child records as `parent_digest`, chaining the manifests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.crypto import CryptoError, KeyRing
from shared.errors import PermanentError
from workers.backups.chunks import BackupCorrupt

FORMAT_VERSION = 1
MAC_PREFIX = b"conveyor-backup-manifest-v1"
WRAP_PREFIX = b"conveyor-backup-key-v1:"


class BackupKeyError(PermanentError):
    code = "backup_key_invalid"


class Segment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    offset: int  # in the data object
    length: int  # sealed bytes
    chunks: int
    rows: int
    plain_bytes: int  # the Arrow IPC stream, before compression
    compressed_bytes: int
    sha256: str  # of the Arrow IPC stream


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = FORMAT_VERSION
    backup_id: uuid.UUID
    user_id: uuid.UUID
    type: str
    data_types: list[str]
    parent_id: uuid.UUID | None
    parent_digest: str | None
    since: str | None  # ISO 8601; rows with updated_at >= since (None: every row)
    high_water_mark: str  # ISO 8601; the next incremental starts here
    created_at: str
    chunk_size: int
    compression: str = "zstd"
    payload: str = "arrow-ipc-stream"
    cipher: str = "AES-256-GCM"
    object_bytes: int
    segments: list[Segment]

    def canonical(self) -> bytes:
        body = self.model_dump(mode="json")
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def digest(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()


def _subkey(data_key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(data_key)


def chunk_key(data_key: bytes) -> bytes:
    return _subkey(data_key, b"conveyor-backup-chunks-v1")


def _mac(data_key: bytes, manifest: Manifest) -> str:
    mac_key = _subkey(data_key, b"conveyor-backup-manifest-v1")
    return hmac.new(mac_key, MAC_PREFIX + manifest.canonical(), hashlib.sha256).hexdigest()


def wrap_key(ring: KeyRing, backup_id: uuid.UUID, data_key: bytes) -> dict[str, str]:
    wrapped = ring.encrypt(data_key, associated_data=WRAP_PREFIX + backup_id.bytes)
    return {"kid": ring.current_kid, "wrapped": base64.b64encode(wrapped).decode()}


def unwrap_key(ring: KeyRing, backup_id: uuid.UUID, key: dict[str, str]) -> bytes:
    try:
        return ring.decrypt(
            base64.b64decode(key["wrapped"]), associated_data=WRAP_PREFIX + backup_id.bytes
        )
    except (CryptoError, KeyError, ValueError) as exc:
        raise BackupKeyError(
            f"cannot unwrap the data key of backup {backup_id} (key id {key.get('kid')!r}): {exc}",
            backup_id=backup_id,
        ) from None


def seal(manifest: Manifest, data_key: bytes, ring: KeyRing) -> dict[str, Any]:
    return {
        "manifest": manifest.model_dump(mode="json"),
        "mac": _mac(data_key, manifest),
        "key": wrap_key(ring, manifest.backup_id, data_key),
    }


def rewrap(document: dict[str, Any], ring: KeyRing) -> dict[str, Any]:
    """The same document with its data key wrapped by the ring's current master key."""
    backup_id = uuid.UUID(document["manifest"]["backup_id"])
    data_key = unwrap_key(ring, backup_id, document["key"])
    return {**document, "key": wrap_key(ring, backup_id, data_key)}


def open_document(document: dict[str, Any], ring: KeyRing) -> tuple[Manifest, bytes]:
    """Verify a sealed document; returns the manifest and the data key."""
    try:
        manifest = Manifest.model_validate(document["manifest"])
        key, mac = document["key"], document["mac"]
    except (KeyError, TypeError, ValidationError) as exc:
        raise BackupCorrupt(f"the manifest is malformed: {exc}") from None
    if manifest.format != FORMAT_VERSION:
        raise BackupCorrupt(f"unsupported backup format {manifest.format}")
    data_key = unwrap_key(ring, manifest.backup_id, key)
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(data_key, manifest)):
        raise BackupCorrupt(
            f"the manifest of backup {manifest.backup_id} failed authentication",
            backup_id=manifest.backup_id,
        )
    return manifest, data_key
