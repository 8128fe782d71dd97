"""Make a user-supplied file name safe to store and to show. Pure.

Invariants (property-tested): the result is non-empty, NFC-normalised, at most
`MAX_NAME_BYTES` bytes of UTF-8, has no path separators, control, format (bidi, zero-width)
or surrogate characters, is not `.`/`..` or a Windows device name, and sanitizing it again
changes nothing.
"""

from __future__ import annotations

import re
import unicodedata

MAX_NAME_BYTES = 255
FALLBACK = "file"
_FORBIDDEN = set('<>:"/\\|?*')
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{i}" for p in ("COM", "LPT") for i in range(10)}
_SPACES = re.compile(r"\s+")


def sanitize_filename(raw: str) -> str:
    name = raw
    for _ in range(4):  # each pass can only shorten; a fixed point comes quickly
        cleaned = _once(name)
        if cleaned == name:
            return cleaned
        name = cleaned
    return name


def _once(raw: str) -> str:
    name = unicodedata.normalize("NFC", raw)
    name = re.split(r"[/\\]", name)[-1]  # last path component only: no traversal
    name = "".join(_safe_char(c) for c in name)
    name = _SPACES.sub(" ", name).strip(" .")
    if not name:
        return FALLBACK
    stem = name.split(".", 1)[0].upper()
    if stem in _RESERVED:
        name = f"_{name}"
    return _truncate(name)


def _safe_char(c: str) -> str:
    if c in _FORBIDDEN:
        return "_"
    if unicodedata.category(c) in _BAD_CATEGORIES:
        return ""
    if c.isspace():
        return " "
    return c


def _truncate(name: str) -> str:
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or len(ext.encode("utf-8")) > 16:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    budget = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    cut = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    result = unicodedata.normalize("NFC", cut).rstrip(" .") + suffix
    return result or FALLBACK


def extension_of(name: str) -> str:
    """Lower-case extension without the dot ('' if none)."""
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""
