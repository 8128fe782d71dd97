"""Envelope encryption with a key ring: AES-256-GCM, key id in every ciphertext.

Ciphertext layout: version + b":" + kid + b":" + nonce(12) + AES-GCM(ciphertext || tag).
- v1: the associated data is whatever the caller gives (`encrypt`/`decrypt`): backup key
  wraps bind "backup-key" + backup id; oauth tokens written before v2 bound the row id alone.
- v2 (`seal`/`open` with a `Binding`): the associated data names table, column and row, so
  a ciphertext neither moves to another row nor to another column of the same row (an
  access token cannot be swapped with its refresh token). `open` still reads v1 values
  with the binding's legacy associated data until `conveyor keys reencrypt` rewrites them,
  unless the ring refuses v1 (`accept_v1=False`, CONVEYOR_CRYPTO_ACCEPT_V1=false): then a
  v1 value in a column fails like a wrong key (CryptoError). `encrypt`/`decrypt` (backup
  key wraps, bound to their purpose and row) are v1 by design and not affected.
Rotation: put a new key first; old keys keep decrypting until re-encrypted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"v1"
BOUND_VERSION = b"v2"
NONCE_BYTES = 12
SIGNATURE_VERSION = "v1"


class CryptoError(Exception):
    """A ciphertext that cannot be opened: unknown key, tampering, or wrong associated data."""


@dataclass(frozen=True)
class Binding:
    """Where a v2 ciphertext lives; `legacy` is the associated data its v1 form used."""

    table: str
    column: str
    row: bytes
    legacy: bytes

    def associated_data(self) -> bytes:
        return b"|".join((b"conveyor:v2", self.table.encode(), self.column.encode(), self.row))


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[tuple[str, bytes], ...]  # (kid, 32-byte key); the first one encrypts
    # `open` reads column values still in the v1 layout (bound to the row only). False once
    # `conveyor keys reencrypt` has upgraded them all: a v1 value is then refused.
    accept_v1: bool = True

    @classmethod
    def parse(cls, spec: str, *, accept_v1: bool = True) -> KeyRing:
        """Parse "kid:base64key,kid2:base64key"."""
        keys: list[tuple[str, bytes]] = []
        for item in filter(None, (part.strip() for part in spec.split(","))):
            kid, sep, encoded = item.partition(":")
            if not sep or not kid or not kid.isalnum():
                raise ValueError(f"key ring entry {kid!r}: expected kid:base64key")
            try:
                key = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                raise ValueError(f"key {kid!r} is not valid base64") from None
            if len(key) != 32:
                raise ValueError(f"key {kid!r} must be 32 bytes, got {len(key)}")
            keys.append((kid, key))
        if not keys:
            raise ValueError("the key ring is empty")
        if len({kid for kid, _ in keys}) != len(keys):
            raise ValueError("duplicate key ids in the key ring")
        return cls(tuple(keys), accept_v1=accept_v1)

    @property
    def current_kid(self) -> str:
        return self.keys[0][0]

    def encrypt(self, plaintext: bytes, *, associated_data: bytes) -> bytes:
        return self._encrypt(VERSION, plaintext, associated_data)

    def decrypt(self, ciphertext: bytes, *, associated_data: bytes) -> bytes:
        version, kid, body = _split(ciphertext)
        if version != VERSION:
            raise CryptoError("not a v1 Conveyor ciphertext")
        return self._decrypt(kid, body, associated_data)

    def seal(self, plaintext: bytes, binding: Binding) -> bytes:
        """A v2 ciphertext bound to table, column and row."""
        return self._encrypt(BOUND_VERSION, plaintext, binding.associated_data())

    def open(self, ciphertext: bytes, binding: Binding) -> bytes:
        """Decrypt a v2 ciphertext, or (while `accept_v1`) a v1 one written before columns
        were bound; a refused v1 value raises CryptoError, as a wrong key or tampering does."""
        version, kid, body = _split(ciphertext)
        if version == BOUND_VERSION:
            return self._decrypt(kid, body, binding.associated_data())
        if version == VERSION and not self.accept_v1:
            raise CryptoError(
                "v1 ciphertexts are no longer accepted (CONVEYOR_CRYPTO_ACCEPT_V1=false)"
            )
        if version == VERSION:
            return self._decrypt(kid, body, binding.legacy)
        raise CryptoError("not a Conveyor ciphertext")

    def is_current(self, ciphertext: bytes) -> bool:
        """Sealed with the current key in the current (v2) format: nothing to re-encrypt."""
        return ciphertext.startswith(self.current_prefix())

    def current_prefix(self) -> bytes:
        return BOUND_VERSION + b":" + self.current_kid.encode() + b":"

    def _encrypt(self, version: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
        kid, key = self.keys[0]
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext, associated_data)
        return version + b":" + kid.encode() + b":" + nonce + sealed

    def _decrypt(self, kid: bytes, body: bytes, associated_data: bytes) -> bytes:
        key = dict(self.keys).get(kid.decode(errors="replace"))
        if key is None:
            raise CryptoError(f"unknown key id {kid.decode(errors='replace')!r}")
        try:
            return AESGCM(key).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], associated_data)
        except InvalidTag:
            raise CryptoError("ciphertext was tampered with or bound to other data") from None

    def needs_rotation(self, ciphertext: bytes) -> bool:
        """A v1 ciphertext not under the current key (v1 callers: backup key wraps)."""
        return not ciphertext.startswith(VERSION + b":" + self.current_kid.encode() + b":")


def _split(ciphertext: bytes) -> tuple[bytes, bytes, bytes]:
    version, _, rest = ciphertext.partition(b":")
    kid, _, body = rest.partition(b":")
    if version not in (VERSION, BOUND_VERSION) or len(body) < NONCE_BYTES + 16:
        raise CryptoError("not a Conveyor ciphertext")
    return version, kid, body


def sign(ring: KeyRing, message: bytes, *, kid: str | None = None) -> str:
    """HMAC-SHA256 of `message` as "v1:<kid>:<base64>", with `kid` (default: the first key)."""
    kid = kid or ring.current_kid
    key = dict(ring.keys)[kid]
    mac = hmac.new(key, message, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION}:{kid}:{base64.b64encode(mac).decode()}"


def verify(ring: KeyRing, signature: str, message: bytes) -> str:
    """The key id that signed `message`; CryptoError for anything else (compared in constant
    time, unknown key ids and malformed signatures included)."""
    version, _, rest = signature.partition(":")
    kid, _, encoded = rest.partition(":")
    key = dict(ring.keys).get(kid)
    if version != SIGNATURE_VERSION or key is None:
        raise CryptoError(f"unknown signature version or key id {kid[:40]!r}")
    try:
        mac = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise CryptoError("signature is not base64") from None
    if not hmac.compare_digest(mac, hmac.new(key, message, hashlib.sha256).digest()):
        raise CryptoError("signature does not match the message")
    return kid
