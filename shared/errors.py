"""Error hierarchy: permanent errors end a job with a reason; transient ones retry."""

from __future__ import annotations


class ConveyorError(Exception):
    """Base of every error Conveyor raises on purpose. `code` is stable and public."""

    code = "error"

    def __init__(self, message: str, **ids: object) -> None:
        super().__init__(message)
        self.message = message
        self.ids = ids


class PermanentError(ConveyorError):
    """Bad input, missing rows, revoked grants: retrying cannot help."""

    code = "permanent"

    def __init__(self, message: str, *, code: str | None = None, **ids: object) -> None:
        super().__init__(message, **ids)
        if code is not None:
            self.code = code


class TransientError(ConveyorError):
    """A dependency is unavailable; retry after `retry_after` seconds (or the kind's backoff)."""

    code = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None, **ids: object) -> None:
        super().__init__(message, **ids)
        self.retry_after = retry_after


class JobCancelled(ConveyorError):
    """Raised at a progress checkpoint when the job's cancellation was requested."""

    code = "cancelled"


class InvalidMessage(PermanentError):
    """A message on the wire that does not follow the contract (dead-lettered with the reason)."""

    code = "invalid_message"


class UnknownKind(PermanentError):
    code = "unknown_kind"


def public_failure(exc: BaseException) -> tuple[str, str]:
    """(code, message) a client may see for an exception we did not raise on purpose.

    Infrastructure errors carry bucket names, request ids, SQL and parameters in their text:
    that goes to the log only. Clients get a stable code and the short, non-secret part
    (an S3 error code such as `NoSuchBucket`, a SQLSTATE)."""
    from minio.error import MinioException, S3Error
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    name = type(exc).__name__
    if isinstance(exc, S3Error):
        return "storage_error", f"object storage refused the request ({exc.code})"
    if isinstance(exc, MinioException):
        return "storage_error", "object storage failed"
    if isinstance(exc, DBAPIError):
        state = getattr(exc.orig, "sqlstate", None) or "unknown"
        return "database_error", f"database error (SQLSTATE {state})"
    if isinstance(exc, SQLAlchemyError):
        return "database_error", f"database error ({name})"
    if isinstance(exc, OSError):
        return "network_error", f"a connection failed ({name})"
    return "error", f"unexpected {name}; details are in the worker log"
