"""Archive inspection from the directory alone: never extracts a byte. Pure."""

from __future__ import annotations

import io
import tarfile
import zipfile
from dataclasses import dataclass


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 10_000
    max_total_bytes: int = 1 << 30  # 1 GiB uncompressed
    max_ratio: float = 100.0  # uncompressed / compressed, over the whole archive


@dataclass(frozen=True)
class ArchiveSummary:
    entries: int
    total_uncompressed: int
    compressed_size: int

    @property
    def ratio(self) -> float:
        return self.total_uncompressed / max(1, self.compressed_size)


class CorruptArchive(ValueError):
    pass


def summarize(data: bytes, mime: str) -> ArchiveSummary:
    try:
        if mime == "application/zip":
            return _zip(data)
        if mime == "application/x-tar":
            return _tar(data)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise CorruptArchive(str(exc)) from exc
    raise CorruptArchive(f"cannot inspect {mime}")


def _zip(data: bytes) -> ArchiveSummary:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    return ArchiveSummary(len(infos), sum(i.file_size for i in infos), len(data))


def _tar(data: bytes) -> ArchiveSummary:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        members = archive.getmembers()
    return ArchiveSummary(len(members), sum(m.size for m in members), len(data))


def bomb_reason(summary: ArchiveSummary, limits: ArchiveLimits) -> str | None:
    """Why this archive is refused as a bomb, or None."""
    if summary.entries > limits.max_entries:
        return f"{summary.entries} entries > {limits.max_entries}"
    if summary.total_uncompressed > limits.max_total_bytes:
        return f"{summary.total_uncompressed} bytes uncompressed > {limits.max_total_bytes}"
    if summary.ratio > limits.max_ratio:
        return f"compression ratio {summary.ratio:.0f} > {limits.max_ratio:.0f}"
    return None
