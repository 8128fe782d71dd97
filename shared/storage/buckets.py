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


def bucket_name(prefix: str, bucket: Bucket) -> str:
    return f"{prefix}{bucket.value}"


def all_bucket_names(prefix: str) -> list[str]:
    return [bucket_name(prefix, b) for b in Bucket]
