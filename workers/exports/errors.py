"""Why an export fails: stable public codes."""

from __future__ import annotations

from shared.errors import PermanentError


class InvalidExport(PermanentError):
    """The request names something that does not exist or cannot be combined."""

    code = "invalid_export"


class TooManyRows(PermanentError):
    """The format cannot hold this many rows (PDF, XLSX): narrow the range or pick another."""

    code = "too_many_rows"


class ExportNotFound(PermanentError):
    code = "not_found"
