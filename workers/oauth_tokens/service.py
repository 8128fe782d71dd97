"""`oauth.refresh`: refresh one connection's tokens (see shared.oauth.refresh for the locking).

The outcome is committed by the caller before `raise_for` turns a failure into the job's
outcome, so a rotated refresh token or a needs_reauth mark is never rolled back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.errors import PermanentError, TransientError
from shared.jobs.payloads.oauth import RefreshPayload
from shared.oauth.refresh import RefreshDeps, RefreshOutcome, refresh_connection


def refresh(
    session: Session, deps: RefreshDeps, payload: RefreshPayload, *, user_id: str
) -> RefreshOutcome:
    """Only the job's user's connection: another user's is "missing" (not_found)."""
    return refresh_connection(
        session, deps, payload.connection_id, force=payload.force, owner=user_id
    )


def raise_for(outcome: RefreshOutcome) -> dict[str, Any]:
    """The job result for a success; the job's error for anything else."""
    ids = {"connection_id": outcome.connection_id}
    if outcome.status in ("refreshed", "fresh"):
        expires_at = outcome.expires_at.isoformat() if outcome.expires_at else None
        return {
            "connection_id": str(outcome.connection_id),
            "outcome": outcome.status,
            "expires_at": expires_at,
        }
    if outcome.status == "retry":
        raise TransientError(
            f"token endpoint unavailable: {outcome.error}", retry_after=outcome.retry_after, **ids
        )
    if outcome.status == "needs_reauth":
        raise PermanentError(
            f"grant is no longer valid ({outcome.error}): connection needs re-authorization",
            code="invalid_grant",
            **ids,
        )
    if outcome.status == "invalid_client":
        raise PermanentError(
            "the provider rejected our client credentials", code="invalid_client", **ids
        )
    if outcome.status == "missing":
        raise PermanentError("no such connection", code="not_found", **ids)
    if outcome.status == "inactive":
        raise PermanentError(f"connection is {outcome.error}", code="connection_inactive", **ids)
    raise PermanentError(f"refresh rejected: {outcome.error}", code="refresh_failed", **ids)
