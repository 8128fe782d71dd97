"""In-memory ObjectStore for unit tests (same contract as S3Store)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from shared.storage.base import ListedObject, ObjectInfo, ObjectNotFound, PresignedPost


class MemoryStore:
    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, tuple[bytes, str]]] = {}
        self.modified: dict[tuple[str, str], datetime] = {}  # tests may age objects here

    def ensure_bucket(self, bucket: str) -> None:
        self.buckets.setdefault(bucket, {})

    def _bucket(self, bucket: str, key: str) -> dict[str, tuple[bytes, str]]:
        if bucket not in self.buckets:
            raise ObjectNotFound(bucket, key)
        return self.buckets[bucket]

    def put(
        self,
        bucket: str,
        key: str,
        data: BinaryIO,
        size: int,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        return self.put_bytes(bucket, key, data.read(size), content_type)

    def put_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> ObjectInfo:
        self._bucket(bucket, key)[key] = (data, content_type)
        self.modified[(bucket, key)] = datetime.now(UTC)
        return self.stat(bucket, key)

    def put_stream(
        self,
        bucket: str,
        key: str,
        data: BinaryIO,
        *,
        part_size: int = 16 * 1024 * 1024,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        self._bucket(bucket, key)
        body = bytearray()
        while piece := data.read(part_size):  # an exception here stores nothing, like S3
            body += piece
        return self.put_bytes(bucket, key, bytes(body), content_type)

    def iter_range(
        self, bucket: str, key: str, *, offset: int = 0, length: int | None = None
    ) -> Iterator[bytes]:
        data = self._get(bucket, key)[0]
        end = len(data) if length is None else offset + length
        for start in range(offset, end, 1024 * 1024):
            yield data[start : min(end, start + 1024 * 1024)]

    def get_bytes(self, bucket: str, key: str, *, max_bytes: int | None = None) -> bytes:
        data = self._get(bucket, key)[0]
        return data[:max_bytes] if max_bytes else data

    def _get(self, bucket: str, key: str) -> tuple[bytes, str]:
        try:
            return self._bucket(bucket, key)[key]
        except KeyError:
            raise ObjectNotFound(bucket, key) from None

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        data, content_type = self._get(bucket, key)
        return ObjectInfo(bucket, key, len(data), hashlib.md5(data).hexdigest(), content_type)

    def delete(self, bucket: str, key: str) -> None:
        self.buckets.get(bucket, {}).pop(key, None)
        self.modified.pop((bucket, key), None)

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ListedObject]:
        objects = self.buckets.get(bucket, {})
        for key in sorted(k for k in objects if k.startswith(prefix)):
            yield ListedObject(key, len(objects[key][0]), self.modified[(bucket, key)])

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> ObjectInfo:
        data, content_type = self._get(src_bucket, src_key)
        return self.put_bytes(dst_bucket, dst_key, data, content_type)

    def presigned_get(self, bucket: str, key: str, expires: timedelta) -> str:
        return f"memory://{bucket}/{key}?expires={int(expires.total_seconds())}"

    def presigned_put(self, bucket: str, key: str, expires: timedelta) -> str:
        return self.presigned_get(bucket, key, expires)

    def presigned_post(
        self, bucket: str, key: str, expires: timedelta, *, content_type: str, size: int
    ) -> PresignedPost:
        fields = {"key": key, "Content-Type": content_type, "size": str(size)}
        return PresignedPost(f"memory://{bucket}", fields)
