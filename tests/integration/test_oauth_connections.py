"""OAuth connections end to end against a real authorization server (oidc-provider, refresh
token rotation on): connect through the ingress, refresh in real worker processes, revoke.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from shared.crypto import CryptoError
from shared.db.engine import session_scope
from shared.db.models import AuditEvent
from shared.messaging.names import EVENTS_EXCHANGE
from shared.oauth import tokens
from shared.oauth.clients import OAuthClient, configured_client
from shared.oauth.providers import zoho
from shared.oauth.refresh import RefreshDeps, refresh_connection
from shared.oauth.token_client import make_http_client
from tests.oauth_server.harness import loopback_client_kwargs
from tests.support.oauth import (
    AUTH_METHOD,
    CLIENT_ID,
    CLIENT_SECRET,
    OAuthStack,
    running_oauth_stack,
)
from tests.support.services import wait_for
from tests.support.stack import Stack
from workers.ingress.app import create_app
from workers.scheduler.oauth_sweep import sweep_once

pytestmark = pytest.mark.integration

ACCESS_TTL_S = 60
MARGIN_S = 10


@pytest.fixture(scope="module")
def oauth(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OAuthStack]:
    with running_oauth_stack(
        stack,
        tmp_path_factory.mktemp("oidc"),
        access_token_ttl_s=ACCESS_TTL_S,
        margin_s=MARGIN_S,
        sweep_s=0,
        worker_processes=2,
        worker_threads=8,
    ) as wired:
        yield wired


def provider_refresh(oauth: OAuthStack, refresh_token: str) -> dict[str, Any]:
    """Use a refresh token directly at the provider, as an attacker or a bug would."""
    with OAuth2Client(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_endpoint_auth_method=AUTH_METHOD,
        **loopback_client_kwargs(),
    ) as client:
        return dict(client.refresh_token(oauth.server.token_url, refresh_token=refresh_token))


def expire_soon(oauth: OAuthStack, connection_id: str, seconds: float = 0) -> None:
    with session_scope(oauth.stack.sessions) as session:
        session.execute(
            text("UPDATE oauth_connections SET expires_at = :at WHERE id = :id"),
            {"at": datetime.now(UTC) + timedelta(seconds=seconds), "id": connection_id},
        )


def token_api(oauth: OAuthStack, connection_id: str) -> Any:
    return oauth.client.post(
        f"/v1/connections/{connection_id}/token", headers=oauth.stack.headers()
    )


def test_connect_flow_stores_encrypted_tokens(oauth: OAuthStack) -> None:
    connection = oauth.connect("user-connect")
    assert connection["status"] == "active"
    assert connection["provider"] == "generic"
    assert "access_token" not in json.dumps(connection)
    access, refresh = oauth.tokens_of(connection["id"])
    assert access and refresh
    with session_scope(oauth.stack.sessions) as session:
        raw = session.execute(
            text(
                "SELECT access_token_enc, refresh_token_enc, token_key_id, expires_at "
                "FROM oauth_connections WHERE id = :id"
            ),
            {"id": connection["id"]},
        ).one()
    assert access.encode() not in raw[0] and refresh.encode() not in raw[1]
    assert access.encode() not in raw[1] and refresh.encode() not in raw[0]
    assert raw[2] == "t1"
    assert raw[3] > datetime.now(UTC) + timedelta(seconds=ACCESS_TTL_S - 10)
    # Re-connecting the same user re-uses the connection.
    again = oauth.connect("user-connect")
    assert again["id"] == connection["id"]
    assert oauth.tokens_of(connection["id"])[1] != refresh


def test_state_is_single_use_and_signed(oauth: OAuthStack) -> None:
    query = oauth.callback_query(f"user-{uuid.uuid4().hex[:6]}")
    first = oauth.client.get(f"/v1/oauth/generic/callback?{query}")
    assert first.status_code == 200
    replay = oauth.client.get(f"/v1/oauth/generic/callback?{query}")
    assert replay.status_code == 400
    assert replay.json()["code"] == "invalid_state"
    forged = oauth.client.get("/v1/oauth/generic/callback?code=x&state=abc.def")
    assert forged.json()["code"] == "invalid_state"


def test_expired_state_is_refused(oauth: OAuthStack) -> None:
    query = oauth.callback_query(f"user-{uuid.uuid4().hex[:6]}")
    with session_scope(oauth.stack.sessions) as session:
        session.execute(text("UPDATE oauth_states SET expires_at = now() - interval '1 second'"))
    response = oauth.client.get(f"/v1/oauth/generic/callback?{query}")
    assert response.status_code == 400
    assert "expired" in response.json()["message"]


def test_authorize_needs_api_key_and_configured_provider(oauth: OAuthStack) -> None:
    anonymous = oauth.client.get("/v1/oauth/generic/authorize?user_id=u", follow_redirects=False)
    assert anonymous.status_code == 401
    headers = oauth.stack.headers()
    hubspot = oauth.client.get("/v1/oauth/hubspot/authorize?user_id=u", headers=headers)
    assert hubspot.status_code == 409
    assert hubspot.json()["code"] == "provider_not_configured"
    assert (
        oauth.client.get("/v1/oauth/nope/authorize?user_id=u", headers=headers).status_code == 404
    )
    providers = oauth.client.get("/v1/oauth/providers", headers=headers).json()
    assert providers["generic"] == "configured"
    assert providers["zoho"] == "not configured"


def test_connections_are_visible_to_their_api_key_only(oauth: OAuthStack) -> None:
    connection = oauth.connect()
    mine = oauth.client.get(f"/v1/connections/{connection['id']}", headers=oauth.stack.headers())
    assert mine.status_code == 200
    other = oauth.stack.headers(oauth.stack.new_api_key())
    assert oauth.client.get(f"/v1/connections/{connection['id']}", headers=other).status_code == 404
    listed = oauth.client.get(
        "/v1/connections", params={"user_id": connection["user_id"]}, headers=oauth.stack.headers()
    )
    assert [c["id"] for c in listed.json()["connections"]] == [connection["id"]]


def test_refresh_job_in_a_worker_stores_new_tokens(oauth: OAuthStack) -> None:
    connection = oauth.connect()
    access, refresh = oauth.tokens_of(connection["id"])
    job = oauth.submit_refresh(connection["id"], force=True)
    done = oauth.stack.wait_state(job["id"])
    assert done.state == "succeeded", done.error_message
    assert done.result is not None and done.result["outcome"] == "refreshed"
    new_access, new_refresh = oauth.tokens_of(connection["id"])
    assert new_access != access and new_refresh != refresh
    assert new_access not in json.dumps(done.result) and new_refresh not in json.dumps(done.result)
    row = oauth.row(connection["id"])
    assert row.refresh_count == 1 and row.last_refreshed_at is not None


def test_refresh_job_for_another_user_touches_nothing(oauth: OAuthStack) -> None:
    """Broken on purpose once (no owner check in refresh_connection): the tokens rotated."""
    connection = oauth.connect()
    before = oauth.tokens_of(connection["id"])
    job = oauth.submit_refresh(connection["id"], force=True, user_id="someone-else")
    done = oauth.stack.wait_state(job["id"])
    assert (done.state, done.error_code) == ("failed", "not_found")
    assert oauth.tokens_of(connection["id"]) == before
    assert oauth.row(connection["id"]).refresh_count == 0


def test_fresh_connection_is_not_refreshed_without_force(oauth: OAuthStack) -> None:
    connection = oauth.connect()
    done = oauth.stack.wait_state(oauth.submit_refresh(connection["id"])["id"])
    assert done.result is not None and done.result["outcome"] == "fresh"
    assert oauth.row(connection["id"]).refresh_count == 0


def test_rotation_many_cycles_then_old_refresh_token_fails(oauth: OAuthStack) -> None:
    connection = oauth.connect()
    first_refresh = oauth.tokens_of(connection["id"])[1]
    assert first_refresh is not None
    seen = {first_refresh}
    for _ in range(6):
        done = oauth.stack.wait_state(oauth.submit_refresh(connection["id"], force=True)["id"])
        assert done.state == "succeeded", done.error_message
        seen.add(oauth.tokens_of(connection["id"])[1] or "")
    assert len(seen) == 7  # rotated every time
    assert oauth.row(connection["id"]).refresh_count == 6
    assert token_api(oauth, connection["id"]).status_code == 200
    with pytest.raises(OAuthError) as excinfo:
        provider_refresh(oauth, first_refresh)
    assert excinfo.value.error == "invalid_grant"


def test_revoked_grant_marks_needs_reauth_and_publishes_event(oauth: OAuthStack) -> None:
    channel = oauth.stack.amqp_channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key="oauth.connection.*")
    connection = oauth.connect()
    refresh = oauth.tokens_of(connection["id"])[1]
    with OAuth2Client(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        token_endpoint_auth_method=AUTH_METHOD,
        revocation_endpoint_auth_method=AUTH_METHOD,
        **loopback_client_kwargs(),
    ) as client:
        revoked = client.revoke_token(
            oauth.server.revocation_url, token=refresh, token_type_hint="refresh_token"
        )
    assert revoked.status_code == 200

    done = oauth.stack.wait_state(oauth.submit_refresh(connection["id"], force=True)["id"])
    assert (done.state, done.error_code, done.attempt) == ("failed", "invalid_grant", 1)
    row = oauth.row(connection["id"])
    assert row.status == "needs_reauth"
    assert row.last_error_code == "invalid_grant"

    def our_event() -> dict[str, Any] | None:
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return None
            event = json.loads(body)
            if event["connection_id"] == connection["id"]:
                assert method.routing_key == "oauth.connection.needs_reauth"
                return dict(event)

    event = wait_for(our_event, timeout=10, what="needs_reauth event")
    assert event["user_id"] == connection["user_id"]  # type: ignore[index]
    assert event["error_code"] == "invalid_grant"  # type: ignore[index]
    channel.connection.close()
    api = token_api(oauth, connection["id"])
    assert (api.status_code, api.json()["code"]) == (409, "connection_inactive")


def test_wrong_client_secret_is_invalid_client_and_leaves_connection(oauth: OAuthStack) -> None:
    connection = oauth.connect()
    expire_soon(oauth, connection["id"])
    before = oauth.row(connection["id"])
    settings = oauth.settings(oauth_generic_client_secret="wrong-secret-0123456789")
    with make_http_client(5) as http, session_scope(oauth.stack.sessions) as session:
        deps = RefreshDeps(
            ring=oauth.ring,
            client_for=lambda c: configured_client(settings, c.provider),
            http=http,
            clock=lambda: datetime.now(UTC),
            margin=timedelta(seconds=MARGIN_S),
        )
        outcome = refresh_connection(session, deps, uuid.UUID(connection["id"]))
    assert (outcome.status, outcome.error) == ("invalid_client", "invalid_client")
    after = oauth.row(connection["id"])
    columns = (
        "status",
        "access_token_enc",
        "refresh_token_enc",
        "expires_at",
        "refresh_count",
        "last_error_code",
        "recent_token_requests",
        "updated_at",
    )
    assert {c: getattr(after, c) for c in columns} == {c: getattr(before, c) for c in columns}
    # The same credentials through the token API: 502 invalid_client, still untouched.
    with TestClient(create_app(settings, oauth.stack.sessions)) as wrong:
        api = wrong.post(f"/v1/connections/{connection['id']}/token", headers=oauth.stack.headers())
    assert (api.status_code, api.json()["code"]) == (502, "invalid_client")
    again = oauth.row(connection["id"])
    assert {c: getattr(again, c) for c in columns} == {c: getattr(before, c) for c in columns}
    # And with the right secret the connection still works.
    assert token_api(oauth, connection["id"]).status_code == 200


def test_twenty_concurrent_refresh_jobs_refresh_once(oauth: OAuthStack) -> None:
    connection = oauth.connect()
    expire_soon(oauth, connection["id"], seconds=-1)
    jobs: list[dict[str, Any]] = []
    lock = threading.Lock()

    def submit() -> None:
        job = oauth.submit_refresh(connection["id"])
        with lock:
            jobs.append(job)

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = []
    for job in jobs:
        done = oauth.stack.wait_state(job["id"], timeout=60)
        assert done.state == "succeeded", (done.error_code, done.error_message)
        assert done.result is not None
        outcomes.append(done.result["outcome"])
    assert sorted(outcomes) == ["fresh"] * 19 + ["refreshed"]
    row = oauth.row(connection["id"])
    assert (row.status, row.refresh_count) == ("active", 1)
    refresh = oauth.tokens_of(connection["id"])[1]
    assert refresh is not None
    assert provider_refresh(oauth, refresh)["access_token"]  # the stored token is the live one


def test_token_api_refreshes_a_token_about_to_expire(oauth: OAuthStack) -> None:
    connection = oauth.connect()
    access = oauth.tokens_of(connection["id"])[0]
    fresh = token_api(oauth, connection["id"])
    assert fresh.status_code == 200
    assert fresh.json()["access_token"] == access
    assert fresh.json()["token_type"] == "Bearer"
    expire_soon(oauth, connection["id"], seconds=MARGIN_S / 2)
    renewed = token_api(oauth, connection["id"])
    assert renewed.status_code == 200
    body = renewed.json()
    assert body["access_token"] != access
    assert datetime.fromisoformat(body["expires_at"]) > datetime.now(UTC) + timedelta(seconds=30)
    assert oauth.row(connection["id"]).refresh_count == 1
    assert token_api(oauth, connection["id"]).json()["access_token"] == body["access_token"]


def test_delete_revokes_at_the_provider(oauth: OAuthStack) -> None:
    connection = oauth.connect()
    refresh = oauth.tokens_of(connection["id"])[1]
    assert refresh is not None
    response = oauth.client.delete(
        f"/v1/connections/{connection['id']}", headers=oauth.stack.headers()
    )
    assert response.status_code == 200
    assert response.json()["status"] == "revoked"
    assert response.json()["provider_revoked"] is True
    assert oauth.tokens_of(connection["id"]) == (None, None)
    with pytest.raises(OAuthError) as excinfo:
        provider_refresh(oauth, refresh)
    assert excinfo.value.error == "invalid_grant"


def test_sweep_submits_one_job_per_due_connection(oauth: OAuthStack) -> None:
    connection = oauth.connect()
    expire_soon(oauth, connection["id"], seconds=MARGIN_S / 2)
    sweep = {
        "now": datetime.now(UTC),
        "margin": timedelta(seconds=MARGIN_S),
        "idle_lifetimes": {},
    }
    assert sweep_once(oauth.stack.sessions, **sweep) >= 1  # type: ignore[arg-type]
    sweep_once(oauth.stack.sessions, **sweep)  # type: ignore[arg-type]
    with session_scope(oauth.stack.sessions) as session:
        jobs = session.execute(
            text(
                "SELECT id FROM jobs WHERE kind = 'oauth.refresh' "
                "AND payload->>'connection_id' = :id"
            ),
            {"id": connection["id"]},
        ).all()
    assert len(jobs) == 1
    done = oauth.stack.wait_state(jobs[0][0])
    assert done.result is not None and done.result["outcome"] == "refreshed"


def deps_with(oauth: OAuthStack, http: httpx.Client, client_for: Any = None) -> RefreshDeps:
    settings = oauth.settings()
    return RefreshDeps(
        ring=oauth.ring,
        client_for=client_for or (lambda c: configured_client(settings, c.provider)),
        http=http,
        clock=lambda: datetime.now(UTC),
        margin=timedelta(seconds=MARGIN_S),
    )


def test_provider_503_is_retried_and_keeps_the_tokens(oauth: OAuthStack) -> None:
    connection = oauth.connect()
    before = oauth.tokens_of(connection["id"])
    unavailable = httpx.MockTransport(lambda _: httpx.Response(503, headers={"Retry-After": "9"}))
    with httpx.Client(transport=unavailable) as http, session_scope(oauth.stack.sessions) as s:
        outcome = refresh_connection(
            s, deps_with(oauth, http), uuid.UUID(connection["id"]), force=True
        )
    assert (outcome.status, outcome.retry_after) == ("retry", 9.0)
    row = oauth.row(connection["id"])
    assert (row.status, row.last_error_code) == ("active", "temporary")
    assert oauth.tokens_of(connection["id"]) == before


def test_zoho_limit_is_counted_in_the_database(oauth: OAuthStack) -> None:
    connection = oauth.connect()
    now = datetime.now(UTC)
    with session_scope(oauth.stack.sessions) as session:
        session.execute(
            text("UPDATE oauth_connections SET recent_token_requests = :at WHERE id = :id"),
            {"at": [now - timedelta(minutes=9)] + [now] * 9, "id": connection["id"]},
        )
    zoho_provider = zoho()
    zoho_client = OAuthClient(zoho_provider, "z", "zs", (), "https://c/cb")
    calls: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(500))
    with httpx.Client(transport=transport) as http, session_scope(oauth.stack.sessions) as s:
        deps = deps_with(oauth, http, client_for=lambda c: zoho_client)
        outcome = refresh_connection(s, deps, uuid.UUID(connection["id"]), force=True)
    assert outcome.status == "retry" and outcome.error == "rate_limited"
    assert outcome.retry_after is not None and 50 < outcome.retry_after <= 60
    assert calls == []  # the provider was not asked


def test_another_api_key_cannot_take_over_a_users_connection(oauth: OAuthStack) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    mine = oauth.connect(user)
    intruder = oauth.stack.new_api_key()
    # Starting an authorization for that user with another key is refused up front...
    response = oauth.client.get(
        "/v1/oauth/generic/authorize",
        params={"user_id": user},
        headers=oauth.stack.headers(intruder),
        follow_redirects=False,
    )
    assert response.status_code == 409
    assert response.json()["code"] == "connection_owned_by_another_key"
    # ...and the owner's connection is untouched.
    assert oauth.row(mine["id"]).api_key_id is not None
    assert oauth.connect(user)["id"] == mine["id"]  # the owner can still reconnect


def audit_actions(oauth: OAuthStack, connection_id: str) -> list[str]:
    with session_scope(oauth.stack.sessions) as session:
        stmt = (
            select(AuditEvent.action)
            .where(AuditEvent.target == f"connection:{connection_id}")
            .order_by(AuditEvent.id)
        )
        return list(session.execute(stmt).scalars())


def test_connect_token_read_and_revoke_leave_one_audit_event_each(oauth: OAuthStack) -> None:
    connection = oauth.connect()
    access, refresh = oauth.tokens_of(connection["id"])
    assert access and refresh
    assert audit_actions(oauth, connection["id"]) == ["oauth.connected"]
    assert token_api(oauth, connection["id"]).status_code == 200
    assert audit_actions(oauth, connection["id"]) == ["oauth.connected", "oauth.token_read"]
    deleted = oauth.client.delete(
        f"/v1/connections/{connection['id']}", headers=oauth.stack.headers()
    )
    assert deleted.status_code == 200
    assert audit_actions(oauth, connection["id"]) == [
        "oauth.connected",
        "oauth.token_read",
        "oauth.revoked",
    ]
    with session_scope(oauth.stack.sessions) as session:
        stmt = select(AuditEvent.details).where(
            AuditEvent.target == f"connection:{connection['id']}"
        )
        logged = json.dumps(list(session.execute(stmt).scalars()))
    assert access not in logged and refresh not in logged


def test_swapping_access_and_refresh_ciphertexts_makes_decryption_fail(oauth: OAuthStack) -> None:
    """Someone with write access to the database swaps the two token columns of one row: the
    tokens no longer decrypt (v2 associated data names the column). (Broken on purpose once
    by binding only the row id, as v1 did: both tokens decrypted, swapped, and this failed.)"""
    connection = oauth.connect()
    assert all(oauth.tokens_of(connection["id"]))
    with session_scope(oauth.stack.sessions) as session:
        session.execute(
            text(
                "UPDATE oauth_connections SET access_token_enc = refresh_token_enc, "
                "refresh_token_enc = access_token_enc WHERE id = :id"
            ),
            {"id": connection["id"]},
        )
    row = oauth.row(connection["id"])
    with pytest.raises(CryptoError):
        tokens.access_token(oauth.ring, row)
    with pytest.raises(CryptoError):
        tokens.refresh_token(oauth.ring, row)


def test_the_same_user_id_in_another_tenant_is_another_person(oauth: OAuthStack) -> None:
    """No 409 across tenants (it would leak that the connection exists), and no sharing.
    Mutation check: with the unique key back on (user_id, provider) this failed with 409."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    mine = oauth.connect(user)
    other_tenant = oauth.stack.new_api_key(tenant="other-oauth")
    theirs = oauth.connect(user, other_tenant)
    assert theirs["id"] != mine["id"]
    assert (oauth.row(mine["id"]).tenant_id, oauth.row(theirs["id"]).tenant_id) == (
        "default",
        "other-oauth",
    )
    listed = oauth.client.get(
        "/v1/connections", params={"user_id": user}, headers=oauth.stack.headers(other_tenant)
    ).json()
    assert [c["id"] for c in listed["connections"]] == [theirs["id"]]
    foreign = oauth.client.get(
        f"/v1/connections/{mine['id']}", headers=oauth.stack.headers(other_tenant)
    )
    assert foreign.status_code == 404
    # The default tenant's owner still sees and keeps its own connection.
    assert oauth.connect(user)["id"] == mine["id"]
