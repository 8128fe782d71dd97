"""Metadata per category, read from headers and directories only. Pure (bytes in, dict out)."""

from __future__ import annotations

import io
import warnings
from typing import Any

import mutagen
from PIL import ExifTags, Image, UnidentifiedImageError

from workers.uploads.archive import ArchiveLimits, CorruptArchive, bomb_reason, summarize
from workers.uploads.detect import Category
from workers.uploads.errors import Reason, Rejected

GPS_IFD = 0x8825
ORIENTATION = 0x0112
SKIPPED_TAGS = {GPS_IFD, 0x8769, 0xA005, 0x927C}  # GPS, IFD pointers, maker notes
MAX_EXIF_TEXT = 256


def extract(
    data: bytes, category: Category, mime: str, *, max_pixels: int, archives: ArchiveLimits
) -> dict[str, Any]:
    if category is Category.IMAGES:
        return image_metadata(data, max_pixels=max_pixels)
    if mime == "application/pdf":
        return {"pages": pdf_page_count(data)}
    if category is Category.ARCHIVES:
        return archive_metadata(data, mime, archives)
    if category in (Category.AUDIO, Category.VIDEO):
        return media_metadata(data)
    return {}


def media_metadata(data: bytes) -> dict[str, Any]:
    """Duration (and audio details) from the container headers, read by mutagen.

    A file mutagen cannot parse still passed magic-byte detection, so it is kept without a
    duration rather than refused: players are more forgiving than tag readers.
    """
    try:
        parsed = mutagen.File(io.BytesIO(data))
    except mutagen.MutagenError:
        return {}
    info = getattr(parsed, "info", None)
    if info is None:
        return {}
    fields = {
        "duration_s": "length",
        "sample_rate": "sample_rate",
        "channels": "channels",
        "bitrate": "bitrate",
    }
    found = {name: getattr(info, attr, None) for name, attr in fields.items()}
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in found.items() if v}


def open_image_header(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse pixel bombs before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise Rejected(Reason.BOMB, str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise Rejected(Reason.CORRUPT, f"unreadable image: {exc}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise Rejected(Reason.BOMB, f"{width}x{height} pixels > {max_pixels}")
    return image


def image_metadata(data: bytes, *, max_pixels: int) -> dict[str, Any]:
    image = open_image_header(data, max_pixels=max_pixels)
    exif = image.getexif()
    return {
        "format": image.format,
        "width": image.width,
        "height": image.height,
        "mode": image.mode,
        "orientation": int(exif.get(ORIENTATION, 1)),
        "frames": int(getattr(image, "n_frames", 1)),
        "exif": clean_exif(dict(exif)),
    }


def clean_exif(tags: dict[int, Any]) -> dict[str, Any]:
    """JSON-safe EXIF with GPS (and opaque blobs) removed."""
    cleaned: dict[str, Any] = {}
    for tag, value in tags.items():
        if tag in SKIPPED_TAGS:
            continue
        safe = _json_value(value)
        if safe is not None:
            cleaned[ExifTags.TAGS.get(tag, str(tag))] = safe
    return cleaned


def _json_value(value: Any) -> Any:
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        return value.replace("\x00", "")[:MAX_EXIF_TEXT]
    if hasattr(value, "numerator") and hasattr(value, "denominator"):
        return float(value.numerator) / float(value.denominator) if value.denominator else None
    if isinstance(value, tuple) and len(value) <= 16:
        items = [_json_value(v) for v in value]
        return items if all(i is not None for i in items) else None
    return None  # bytes and anything opaque


def pdf_page_count(data: bytes) -> int:
    # Imported here: a worker process that never reads a PDF need not carry pypdf (with the
    # export format libraries, ~29 MB resident: workers/exports/formats/__init__.py).
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        return len(PdfReader(io.BytesIO(data)).pages)
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Rejected(Reason.CORRUPT, f"unreadable PDF: {exc}") from None


def archive_metadata(data: bytes, mime: str, limits: ArchiveLimits) -> dict[str, Any]:
    try:
        summary = summarize(data, mime)
    except CorruptArchive as exc:
        raise Rejected(Reason.CORRUPT, f"unreadable archive: {exc}") from None
    why = bomb_reason(summary, limits)
    if why is not None:
        raise Rejected(Reason.BOMB, why)
    return {"entries": summary.entries, "uncompressed_bytes": summary.total_uncompressed}
