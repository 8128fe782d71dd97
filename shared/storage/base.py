"""The object store port: what jobs need from S3, nothing more."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str
    content_type: str | None


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    last_modified: datetime  # aware, UTC


@dataclass(frozen=True)
class PresignedPost:
    """A browser-style POST upload: send `fields` then the file (form field `file`, last) as
    multipart/form-data to `url`. The signed policy binds the key, type and exact size."""

    url: str
    fields: dict[str, str]


class ObjectNotFound(LookupError):
    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"{bucket}/{key}")
        self.bucket = bucket
        self.key = key


class ObjectStore(Protocol):
    def ensure_bucket(self, bucket: str) -> None: ...

    def put(
        self,
        bucket: str,
        key: str,
        data: BinaryIO,
        size: int,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo: ...

    def put_bytes(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> ObjectInfo: ...

    def get_bytes(self, bucket: str, key: str, *, max_bytes: int | None = None) -> bytes: ...

    def put_stream(
        self,
        bucket: str,
        key: str,
        data: BinaryIO,
        *,
        part_size: int = 16 * 1024 * 1024,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        """Upload a stream of unknown length (multipart): the object appears only when the
        whole stream was read; an exception from `data` aborts the upload."""
        ...

    def iter_range(
        self, bucket: str, key: str, *, offset: int = 0, length: int | None = None
    ) -> Iterator[bytes]:
        """The object's bytes [offset, offset+length) in pieces, streamed (bounded memory)."""
        ...

    def stat(self, bucket: str, key: str) -> ObjectInfo: ...

    def delete(self, bucket: str, key: str) -> None: ...

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ListedObject]:
        """Every object under `prefix` (recursively), in key order, streamed page by page."""
        ...

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> ObjectInfo: ...

    def presigned_get(self, bucket: str, key: str, expires: timedelta) -> str: ...

    def presigned_put(self, bucket: str, key: str, expires: timedelta) -> str: ...

    def presigned_post(
        self, bucket: str, key: str, expires: timedelta, *, content_type: str, size: int
    ) -> PresignedPost:
        """An upload the store itself refuses unless it is exactly `size` bytes of
        `content_type` at `key` (S3 POST policy: content-length-range, Content-Type)."""
        ...
