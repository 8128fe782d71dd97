"""Change tracking on the product tables: the one rule backup and device sync share.

Product rows carry `updated_at = now()` (the writing transaction's *start* time, set by the
`conveyor_touch_updated_at` trigger) and soft-delete through `deleted_at`. A reader that
takes "changed since T" must pick its next T so that a transaction still running when the
read's snapshot was taken — which will commit later with an `updated_at` *older* than the
read — is not skipped. `safe_watermark` is that T: the start of the oldest transaction still
open in this database at the moment of the call (or the caller's own start if none is
older). Rows may therefore show up in two consecutive reads; consumers apply idempotently.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

_SAFE_WATERMARK = text(
    """
    SELECT least(
        now(),
        coalesce(
            (SELECT min(xact_start) FROM pg_stat_activity
             WHERE datname = current_database() AND xact_start IS NOT NULL
               AND backend_type = 'client backend'),
            now()
        )
    )
    """
)


def safe_watermark(session: Session) -> datetime:
    """The `updated_at` bound below which every committed change is visible to this session.

    Call it inside the same transaction (REPEATABLE READ) that reads the changes, before or
    right after the first read: every transaction that started before the returned instant
    is either visible in this snapshot or still open and thus newer than the mark.
    """
    value = session.execute(_SAFE_WATERMARK).scalar_one()
    assert isinstance(value, datetime)
    return value
