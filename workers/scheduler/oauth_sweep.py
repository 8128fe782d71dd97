"""The OAuth refresh sweep: submit `oauth.refresh` for connections about to need it.

Idempotent: a connection with a refresh job queued or running (or one that failed within
`FAILED_BACKOFF`, e.g. invalid_client) gets no second one. Runs on the leader only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import session_scope
from shared.db.repos import oauth as oauth_repo
from shared.jobs.submit import NewJob, submit_jobs
from shared.oauth.policy import idle_margin

log = structlog.get_logger("scheduler")

BATCH = 500


def sweep_once(
    sessions: sessionmaker[Session],
    *,
    now: datetime,
    margin: timedelta,
    idle_lifetimes: Mapping[str, timedelta],
    limit: int = BATCH,
) -> int:
    with session_scope(sessions) as session:
        due = oauth_repo.due_for_refresh(
            session,
            now=now,
            margin=margin,
            idle_lifetimes=idle_lifetimes,
            idle_margin={p: idle_margin(lifetime) for p, lifetime in idle_lifetimes.items()},
            limit=limit,
        )
        for tenant_id in sorted({tenant for _, _, tenant in due}):
            # Crosses tenants on purpose (the owner's chore); each job under its connection's.
            submit_jobs(
                session,
                [
                    NewJob(
                        kind=oauth_repo.REFRESH_KIND,
                        user_id=user_id,
                        payload={"connection_id": str(connection_id)},
                    )
                    for connection_id, user_id, tenant in due
                    if tenant == tenant_id
                ],
                source="scheduler",
                now=now,
                tenant_id=tenant_id,
            )
    if due:
        log.info("scheduler.oauth_refreshes_submitted", count=len(due))
    return len(due)
