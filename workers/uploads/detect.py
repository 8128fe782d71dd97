"""What a file really is, from its first bytes, and which category may hold it. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import filetype


class Category(StrEnum):
    IMAGES = "images"
    DOCUMENTS = "documents"
    AUDIO = "audio"
    VIDEO = "video"
    ARCHIVES = "archives"


@dataclass(frozen=True)
class Allowed:
    mime: str
    category: Category
    extensions: frozenset[str]


def _allow(mime: str, category: Category, *extensions: str) -> tuple[str, Allowed]:
    return mime, Allowed(mime, category, frozenset(extensions))


WHITELIST: dict[str, Allowed] = dict(
    [
        _allow("image/jpeg", Category.IMAGES, "jpg", "jpeg", "jpe"),
        _allow("image/png", Category.IMAGES, "png"),
        _allow("image/gif", Category.IMAGES, "gif"),
        _allow("image/webp", Category.IMAGES, "webp"),
        _allow("application/pdf", Category.DOCUMENTS, "pdf"),
        _allow("audio/mpeg", Category.AUDIO, "mp3"),
        _allow("audio/x-wav", Category.AUDIO, "wav"),
        _allow("audio/ogg", Category.AUDIO, "ogg", "oga"),
        _allow("audio/x-flac", Category.AUDIO, "flac"),
        _allow("video/mp4", Category.VIDEO, "mp4", "m4v"),
        _allow("video/webm", Category.VIDEO, "webm"),
        _allow("video/quicktime", Category.VIDEO, "mov"),
        _allow("application/zip", Category.ARCHIVES, "zip"),
        _allow("application/x-tar", Category.ARCHIVES, "tar"),
    ]
)

# Declared types that mean the same as the detected one.
ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "audio/wav": "audio/x-wav",
    "audio/wave": "audio/x-wav",
    "audio/mp3": "audio/mpeg",
    "audio/flac": "audio/x-flac",
    "application/x-zip-compressed": "application/zip",
    "application/x-pdf": "application/pdf",
}

HEAD_BYTES = 8192  # enough for every signature the detector knows (tar's sits at 257)


class Verdict(StrEnum):
    OK = "ok"
    NOT_ALLOWED = "type_not_allowed"
    MISMATCH = "type_mismatch"


@dataclass(frozen=True)
class Detection:
    verdict: Verdict
    mime: str | None
    allowed: Allowed | None


def sniff(head: bytes) -> str | None:
    kind = filetype.guess(head)
    return None if kind is None else str(kind.mime)


def normalize_type(declared: str) -> str:
    base = declared.split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base)


def classify(head: bytes, *, declared_type: str, extension: str) -> Detection:
    """Detected type must be whitelisted, and agree with the declared type and extension."""
    mime = sniff(head)
    allowed = WHITELIST.get(mime) if mime else None
    if allowed is None:
        return Detection(Verdict.NOT_ALLOWED, mime, None)
    if normalize_type(declared_type) != mime or extension.lower() not in allowed.extensions:
        return Detection(Verdict.MISMATCH, mime, allowed)
    return Detection(Verdict.OK, mime, allowed)
