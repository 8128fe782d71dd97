"""The scheduler's refresh sweep keeps short-lived access tokens valid, one job at a time."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import text

from shared.db.engine import session_scope
from tests.support.oauth import OAuthStack, running_oauth_stack
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

# oidc-provider counts whole seconds: a token lives 9 to 10 s. The margin is what the
# scheduler may lag on a loaded 2-core machine (2 s was not enough: issue 14, item 10).
ACCESS_TTL_S = 10
MARGIN_S = 6
SWEEP_S = 0.3
WATCH_S = 20


@pytest.fixture(scope="module")
def oauth(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthStack]:
    with running_oauth_stack(
        stack,
        tmp_path_factory.mktemp("oidc"),
        access_token_ttl_s=ACCESS_TTL_S,
        margin_s=MARGIN_S,
        sweep_s=SWEEP_S,
        worker_processes=1,
        worker_threads=4,
        CONVEYOR_RELAY_IDLE_POLL_S="0.2",
    ) as wired:
        yield wired


def active_refresh_jobs(oauth: OAuthStack, connection_id: str) -> int:
    with session_scope(oauth.stack.sessions) as session:
        return int(
            session.execute(
                text(
                    "SELECT count(*) FROM jobs WHERE kind = 'oauth.refresh' "
                    "AND state IN ('queued', 'running') AND payload->>'connection_id' = :id"
                ),
                {"id": connection_id},
            ).scalar_one()
        )


def refresh_jobs_created(oauth: OAuthStack, connection_id: str) -> list[datetime]:
    with session_scope(oauth.stack.sessions) as session:
        return list(
            session.execute(
                text(
                    "SELECT created_at FROM jobs WHERE kind = 'oauth.refresh' "
                    "AND payload->>'connection_id' = :id ORDER BY created_at"
                ),
                {"id": connection_id},
            ).scalars()
        )


def test_sweep_refreshes_before_expiry_without_duplicate_jobs(oauth: OAuthStack) -> None:
    """The sweep's promise: each token's refresh is *submitted* before the token expires.

    How long the refresh then takes depends on the machine's load, so that is not asserted
    (on a busy 2-core box a worker can lag past a 4 s token's expiry: issue 14, item 10).
    """
    connections = [oauth.connect(f"sweep-{uuid.uuid4().hex[:6]}")["id"] for _ in range(3)]
    expiries: dict[str, set[datetime]] = {c: set() for c in connections}
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        for connection_id in connections:
            row = oauth.row(connection_id)
            assert row.status == "active", row.last_error_code
            assert row.expires_at is not None
            expiries[connection_id].add(row.expires_at)
            assert active_refresh_jobs(oauth, connection_id) <= 1
        time.sleep(0.1)
    for connection_id in connections:
        seen = sorted(expiries[connection_id])
        assert len(seen) >= 3, f"tokens were not refreshed: {seen}"
        # Token k (k = 0 from the connect) is replaced by refresh job k + 1: submitted in time?
        created = refresh_jobs_created(oauth, connection_id)
        assert len(created) >= len(seen) - 1
        for submitted, expired in zip(created, seen[:-1], strict=False):
            assert submitted < expired, f"refresh submitted at {submitted}, token expired {expired}"
        api = oauth.client.post(
            f"/v1/connections/{connection_id}/token", headers=oauth.stack.headers()
        )
        assert api.status_code == 200
        assert api.json()["access_token"]
