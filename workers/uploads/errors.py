"""Why an upload was refused: a permanent failure with a stable public reason code."""

from __future__ import annotations

from enum import StrEnum

from shared.errors import PermanentError


class Reason(StrEnum):
    TOO_LARGE = "too_large"
    TYPE_NOT_ALLOWED = "type_not_allowed"
    TYPE_MISMATCH = "type_mismatch"
    SIZE_MISMATCH = "size_mismatch"
    QUOTA_EXCEEDED = "quota_exceeded"
    CORRUPT = "corrupt"
    BOMB = "bomb"
    MALWARE = "malware"
    NOT_UPLOADED = "not_uploaded"
    NOT_FOUND = "not_found"


class Rejected(PermanentError):
    def __init__(self, reason: Reason, message: str, **ids: object) -> None:
        super().__init__(message, code=reason.value, **ids)
        self.reason = reason
