"""Dramatiq glue for `oauth.refresh`: own transaction, commit, then succeed or fail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy.orm import Session

from shared.config import get_settings
from shared.db.engine import session_scope
from shared.jobs.catalog import OAUTH_REFRESH
from shared.jobs.context import JobContext
from shared.jobs.payloads.oauth import RefreshPayload
from shared.messaging.actors import job_actor
from shared.oauth.clients import configured_client
from shared.oauth.refresh import RefreshDeps
from shared.oauth.token_client import make_http_client
from workers.oauth_tokens import service


@lru_cache(maxsize=1)
def _deps() -> RefreshDeps:
    settings = get_settings()
    return RefreshDeps(
        ring=settings.key_ring(),
        client_for=lambda c: configured_client(
            settings, c.provider, accounts_server=c.accounts_server
        ),
        http=make_http_client(settings.oauth_http_timeout_s),
        clock=lambda: datetime.now(UTC),
        margin=timedelta(seconds=settings.oauth_refresh_margin_s),
    )


def refresh(ctx: JobContext, session: Session, payload: RefreshPayload) -> dict[str, Any]:
    del session  # the refresh must commit even when the job then fails: its own transaction
    with session_scope(ctx.sessions) as own:
        outcome = service.refresh(own, _deps(), payload, user_id=ctx.user_id)
    return service.raise_for(outcome)


job_actor(OAUTH_REFRESH)(refresh)
