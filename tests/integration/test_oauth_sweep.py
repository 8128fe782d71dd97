"""The scheduler's refresh sweep keeps short-lived access tokens valid, one job at a time."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from shared.db.engine import session_scope
from tests.support.oauth import OAuthStack, running_oauth_stack
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

ACCESS_TTL_S = 4  # oidc-provider counts whole seconds: a token lives 3 to 4 s
MARGIN_S = 2
SWEEP_S = 0.3
WATCH_S = 12


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


def test_sweep_refreshes_before_expiry_without_duplicate_jobs(oauth: OAuthStack) -> None:
    connections = [oauth.connect(f"sweep-{uuid.uuid4().hex[:6]}")["id"] for _ in range(3)]
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        now = datetime.now(UTC)
        for connection_id in connections:
            row = oauth.row(connection_id)
            assert row.status == "active", row.last_error_code
            assert row.expires_at is not None and row.expires_at > now, "token expired"
            assert active_refresh_jobs(oauth, connection_id) <= 1
        time.sleep(0.1)
    for connection_id in connections:
        row = oauth.row(connection_id)
        assert row.refresh_count >= WATCH_S // ACCESS_TTL_S
        api = oauth.client.post(
            f"/v1/connections/{connection_id}/token", headers=oauth.stack.headers()
        )
        assert api.status_code == 200
        assert api.json()["access_token"]
