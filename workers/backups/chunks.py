"""Chunked AES-256-GCM: a segment of plaintext becomes a run of fixed-size sealed chunks.

Chunk i of segment s carries plaintext bytes [i*C, (i+1)*C) and is sealed with
nonce = s (u32 BE) || i (u64 BE) and associated data
AD_PREFIX || backup id (16 bytes) || s (u32 BE) || i (u64 BE) || final (u8).
Every chunk but the last holds exactly C bytes; the last holds 0..C bytes and final = 1, so
reordering, dropping or appending chunks and cutting the segment short all fail a tag check.
Deterministic nonces are safe because every backup attempt draws a fresh data key.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import PermanentError

CHUNK_SIZE = 1 << 20
TAG_BYTES = 16
AD_PREFIX = b"conveyor-backup-chunk-v1"


class BackupCorrupt(PermanentError):
    code = "backup_corrupt"


def nonce(segment: int, index: int) -> bytes:
    return struct.pack(">IQ", segment, index)


def associated_data(backup_id: uuid.UUID, segment: int, index: int, final: bool) -> bytes:
    return AD_PREFIX + backup_id.bytes + struct.pack(">IQB", segment, index, int(final))


def sealed_length(plain_length: int, chunk_size: int = CHUNK_SIZE) -> int:
    chunks = max(1, -(-plain_length // chunk_size))
    return plain_length + chunks * TAG_BYTES


class Sealer:
    """Feed plaintext in any pieces; get sealed chunks back as soon as they are full."""

    def __init__(
        self, key: bytes, backup_id: uuid.UUID, segment: int, chunk_size: int = CHUNK_SIZE
    ) -> None:
        self._aead = AESGCM(key)
        self._backup_id = backup_id
        self._segment = segment
        self._chunk_size = chunk_size
        self._buffer = bytearray()
        self.chunks = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        # Keep at least one byte back: only `finish` may seal the final chunk.
        while len(self._buffer) > self._chunk_size:
            out.append(self._seal(bytes(self._buffer[: self._chunk_size]), final=False))
            del self._buffer[: self._chunk_size]
        return out

    def finish(self) -> bytes:
        sealed = self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        return sealed

    def _seal(self, plain: bytes, *, final: bool) -> bytes:
        ad = associated_data(self._backup_id, self._segment, self.chunks, final)
        sealed = self._aead.encrypt(nonce(self._segment, self.chunks), plain, ad)
        self.chunks += 1
        return sealed


def open_segment(
    pieces: Iterable[bytes],
    key: bytes,
    backup_id: uuid.UUID,
    segment: int,
    length: int,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[bytes]:
    """Plaintext of one segment, chunk by chunk; raises BackupCorrupt at the first bad chunk.

    `length` (from the authenticated manifest) decides which chunk is the final one.
    """
    aead = AESGCM(key)
    sealed_size = chunk_size + TAG_BYTES
    total = max(1, -(-length // sealed_size))
    buffer = bytearray()
    index = 0
    received = 0
    for piece in pieces:
        received += len(piece)
        buffer += piece
        while len(buffer) >= sealed_size and index < total - 1:
            yield _open(aead, bytes(buffer[:sealed_size]), backup_id, segment, index, False)
            del buffer[:sealed_size]
            index += 1
    if received != length or index != total - 1:
        raise BackupCorrupt(
            f"segment {segment} is {received} bytes, the manifest says {length}",
            backup_id=backup_id,
        )
    yield _open(aead, bytes(buffer), backup_id, segment, index, True)


def _open(
    aead: AESGCM, sealed: bytes, backup_id: uuid.UUID, segment: int, index: int, final: bool
) -> bytes:
    try:
        return aead.decrypt(
            nonce(segment, index), sealed, associated_data(backup_id, segment, index, final)
        )
    except InvalidTag:
        raise BackupCorrupt(
            f"segment {segment} chunk {index} failed authentication "
            "(tampered, reordered, truncated or the wrong key)",
            backup_id=backup_id,
        ) from None
