"""The limits an upload is checked against, read once from settings. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.config import Settings
from shared.storage.buckets import Bucket, bucket_name
from workers.uploads.archive import ArchiveLimits
from workers.uploads.detect import Category


@dataclass(frozen=True)
class UploadPolicy:
    bucket_prefix: str = "conveyor-"
    max_bytes: int = 50 * 1024 * 1024
    category_max_bytes: Mapping[str, int] = field(default_factory=dict)
    quota_bytes: int = 5 * 1024**3
    max_pixels: int = 40_000_000
    archives: ArchiveLimits = field(default_factory=ArchiveLimits)

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadPolicy:
        return cls(
            bucket_prefix=settings.bucket_prefix,
            max_bytes=settings.upload_max_bytes,
            category_max_bytes=dict(settings.upload_category_max_bytes),
            quota_bytes=settings.user_quota_bytes,
            max_pixels=settings.image_max_pixels,
            archives=ArchiveLimits(
                max_entries=settings.archive_max_entries,
                max_total_bytes=settings.archive_max_uncompressed_bytes,
                max_ratio=settings.archive_max_ratio,
            ),
        )

    def limit_for(self, category: Category) -> int:
        return self.category_max_bytes.get(category.value, self.max_bytes)

    @property
    def largest_limit(self) -> int:
        """What may be read at all, before the content says which category it is."""
        return max([self.max_bytes, *self.category_max_bytes.values()])

    def bucket(self, bucket: Bucket) -> str:
        return bucket_name(self.bucket_prefix, bucket)
