"""Bucket names (with the configured prefix) and deterministic object keys."""

from __future__ import annotations

from enum import StrEnum


class Bucket(StrEnum):
    INCOMING = "incoming"
    IMAGES = "images"
    DOCUMENTS = "documents"
    AUDIO = "audio"
    VIDEO = "video"
    ARCHIVES = "archives"
    ATTACHMENTS = "attachments"
    BACKUPS = "backups"
    EXPORTS = "exports"
    DIAG = "diag"  # diag.noop's store round-trip (chaos suite, smoke tests)


def bucket_name(prefix: str, bucket: Bucket) -> str:
    return f"{prefix}{bucket.value}"


def all_bucket_names(prefix: str) -> list[str]:
    return [bucket_name(prefix, b) for b in Bucket]


THUMBNAIL_SIZES = (1024, 256, 128)  # bounding boxes, largest first (each made from the last)


def incoming_key(upload_id: object) -> str:
    return f"uploads/{upload_id}"


def file_key(file_id: object) -> str:
    return f"files/{file_id}"


def thumbnail_key(file_id: object, size: int) -> str:
    return f"thumbnails/{file_id}/{size}.webp"
