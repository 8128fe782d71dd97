"""Pure parts of OAuth connections: state signing, PKCE, refresh decisions, rate limit,
provider configuration and the job's outcome mapping."""

from __future__ import annotations

import base64
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from shared.config import Settings
from shared.crypto import KeyRing
from shared.errors import PermanentError, TransientError
from shared.oauth.clients import (
    OAuthClient,
    ProviderNotConfigured,
    UnknownProvider,
    configured_client,
    idle_lifetimes,
    provider_statuses,
)
from shared.oauth.policy import rate_limit_wait, recent_requests, refresh_due
from shared.oauth.providers import ZOHO_TOKEN_RATE_LIMIT, ClientAuthMethod, zoho
from shared.oauth.refresh import RefreshOutcome
from shared.oauth.state import (
    code_challenge,
    new_code_verifier,
    new_nonce,
    sign_state,
    state_keys,
    verify_state,
)
from shared.oauth.token_client import refresh_grant
from shared.oauth.token_response import TokenError, TokenErrorKind, TokenSet
from workers.oauth_tokens.service import raise_for

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def ring(*kids: str) -> KeyRing:
    return KeyRing.parse(",".join(f"{k}:{base64.b64encode(os.urandom(32)).decode()}" for k in kids))


# --- state --------------------------------------------------------------------------------


def test_signed_state_verifies_and_returns_nonce() -> None:
    keys = state_keys(ring("k1"))
    nonce = new_nonce()
    assert verify_state(keys, sign_state(keys[0], nonce)) == nonce


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s + "x",
        lambda s: "A" + s[1:] if s[0] != "A" else "B" + s[1:],
        lambda s: s.split(".")[0],
        lambda s: "",
        lambda s: "." + s.split(".")[1],
        lambda s: s * 5,
    ],
)
def test_tampered_state_is_refused(mangle: object) -> None:
    keys = state_keys(ring("k1"))
    state = sign_state(keys[0], new_nonce())
    assert verify_state(keys, mangle(state)) is None  # type: ignore[operator]


def test_state_from_another_deployment_is_refused() -> None:
    ours, theirs = state_keys(ring("k1")), state_keys(ring("k1"))
    assert verify_state(ours, sign_state(theirs[0], new_nonce())) is None


def test_state_survives_key_rotation() -> None:
    old = ring("k1")
    rotated = KeyRing((*ring("k2").keys, *old.keys))
    state = sign_state(state_keys(old)[0], "nonce")
    assert verify_state(state_keys(rotated), state) == "nonce"


def test_state_key_is_derived_not_the_master_key() -> None:
    keyring = ring("k1")
    assert state_keys(keyring)[0] != keyring.keys[0][1]


def test_pkce_challenge_matches_rfc7636() -> None:
    verifier = new_code_verifier()
    assert 43 <= len(verifier) <= 128
    assert code_challenge(verifier) == create_s256_code_challenge(verifier)
    # RFC 7636 appendix B
    assert (
        code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


# --- refresh decisions --------------------------------------------------------------------

MARGIN = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("expires_in", "due"),
    [(None, True), (-60, True), (0, True), (299, True), (300, True), (301, False), (3600, False)],
)
def test_refresh_due_within_margin(expires_in: int | None, due: bool) -> None:
    expires_at = None if expires_in is None else NOW + timedelta(seconds=expires_in)
    assert refresh_due(now=NOW, expires_at=expires_at, last_used_at=NOW, margin=MARGIN) is due


def test_idle_refresh_token_is_refreshed_before_it_lapses() -> None:
    fresh = NOW + timedelta(hours=1)
    idle = timedelta(days=60)  # Pipedrive
    kwargs = {"now": NOW, "expires_at": fresh, "margin": MARGIN, "idle_lifetime": idle}
    assert not refresh_due(last_used_at=NOW - timedelta(days=52), **kwargs)  # type: ignore[arg-type]
    assert refresh_due(last_used_at=NOW - timedelta(days=53), **kwargs)  # type: ignore[arg-type]
    short = {**kwargs, "idle_lifetime": timedelta(days=4)}  # margin = a quarter
    assert not refresh_due(last_used_at=NOW - timedelta(days=2), **short)  # type: ignore[arg-type]
    assert refresh_due(last_used_at=NOW - timedelta(days=3), **short)  # type: ignore[arg-type]


def test_zoho_rate_limit_allows_ten_per_ten_minutes() -> None:
    limit = ZOHO_TOKEN_RATE_LIMIT
    nine = [NOW - timedelta(seconds=30 * i) for i in range(9)]
    assert rate_limit_wait(nine, NOW, limit) is None
    ten = [*nine, NOW - timedelta(minutes=8)]
    assert rate_limit_wait(ten, NOW, limit) == pytest.approx(120.0)
    old = [NOW - timedelta(minutes=11)] * 20
    assert rate_limit_wait(old, NOW, limit) is None
    assert recent_requests([*old, *nine], NOW, limit) == sorted(nine)


def test_no_rate_limit_keeps_no_history() -> None:
    assert rate_limit_wait([NOW] * 100, NOW, None) is None
    assert recent_requests([NOW], NOW, None) == []


# --- configuration ------------------------------------------------------------------------


def generic_settings(**extra: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "public_url": "https://conveyor.example.com/",
        "oauth_generic_client_id": "cid",
        "oauth_generic_client_secret": "a-real-secret",
        "oauth_generic_authorize_url": "https://idp.example.com/auth",
        "oauth_generic_token_url": "https://idp.example.com/token",
        "oauth_generic_revoke_url": "https://idp.example.com/revoke",
        "oauth_generic_auth_method": "client_secret_post",
        "oauth_generic_scopes": "openid offline_access",
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def test_generic_provider_from_settings() -> None:
    client = configured_client(generic_settings(), "generic")
    assert client.redirect_uri == "https://conveyor.example.com/v1/oauth/generic/callback"
    assert client.scopes == ("openid", "offline_access")
    assert client.provider.client_auth_method is ClientAuthMethod.CLIENT_SECRET_POST
    assert client.provider.revocation_url == "https://idp.example.com/revoke"
    assert "a-real-secret" not in repr(client)


def test_provider_without_credentials_is_not_configured() -> None:
    settings = generic_settings()
    assert provider_statuses(settings) == {
        "hubspot": "not configured",
        "salesforce": "not configured",
        "pipedrive": "not configured",
        "zoho": "not configured",
        "generic": "configured",
    }
    with pytest.raises(ProviderNotConfigured):
        configured_client(settings, "hubspot")
    with pytest.raises(ProviderNotConfigured):
        configured_client(generic_settings(oauth_generic_token_url=None), "generic")
    with pytest.raises(UnknownProvider):
        configured_client(settings, "myspace")


def test_bad_generic_endpoint_is_a_configuration_error() -> None:
    with pytest.raises(ProviderNotConfigured):
        configured_client(generic_settings(oauth_generic_token_url="http://idp/token"), "generic")


def test_zoho_client_follows_the_connection_accounts_server() -> None:
    settings = Settings(env="test", oauth_zoho_client_id="z", oauth_zoho_client_secret="zs-real")  # type: ignore[call-arg]
    client = configured_client(settings, "zoho", accounts_server="https://accounts.zoho.eu")
    assert client.provider.token_url == "https://accounts.zoho.eu/oauth/v2/token"


def test_idle_lifetimes_of_configured_providers() -> None:
    settings = generic_settings(oauth_pipedrive_client_id="p", oauth_pipedrive_client_secret="ps")
    assert idle_lifetimes(settings) == {"pipedrive": timedelta(days=60)}


# --- job outcome --------------------------------------------------------------------------

CID = uuid.uuid4()


def test_success_outcomes_become_results_without_tokens() -> None:
    result = raise_for(RefreshOutcome("refreshed", CID, expires_at=NOW))
    assert result == {
        "connection_id": str(CID),
        "outcome": "refreshed",
        "expires_at": NOW.isoformat(),
    }
    assert raise_for(RefreshOutcome("fresh", CID))["outcome"] == "fresh"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("needs_reauth", "invalid_grant"),
        ("invalid_client", "invalid_client"),
        ("missing", "not_found"),
        ("inactive", "connection_inactive"),
        ("error", "refresh_failed"),
    ],
)
def test_failures_are_permanent_with_a_reason(status: str, code: str) -> None:
    with pytest.raises(PermanentError) as excinfo:
        raise_for(RefreshOutcome(status, CID, error="x"))
    assert excinfo.value.code == code


def test_retry_honours_retry_after() -> None:
    with pytest.raises(TransientError) as excinfo:
        raise_for(RefreshOutcome("retry", CID, error="rate_limited", retry_after=42.0))
    assert excinfo.value.retry_after == 42.0


# --- token endpoint calls (httpx mock transport) --------------------------------------------


def zoho_client() -> OAuthClient:
    provider = zoho()
    return OAuthClient(provider, "z", "zs", provider.default_scopes, "https://c/cb")


def call_token_endpoint(client: OAuthClient, respond: Any) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(respond, Exception):
            raise respond
        assert b"refresh_token=rt" in request.content
        return respond  # type: ignore[no-any-return]

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        return refresh_grant(http, client, refresh_token="rt", clock=lambda: NOW)


def test_429_with_retry_after_is_retryable_with_the_delay() -> None:
    error = call_token_endpoint(
        zoho_client(), httpx.Response(429, headers={"Retry-After": "7"}, json={})
    )
    assert isinstance(error, TokenError)
    assert (error.kind, error.retry_after, error.retryable) == (
        TokenErrorKind.RATE_LIMITED,
        7.0,
        True,
    )


def test_zoho_invalid_code_with_http_200_is_invalid_grant() -> None:
    error = call_token_endpoint(zoho_client(), httpx.Response(200, json={"error": "invalid_code"}))
    assert isinstance(error, TokenError) and error.kind is TokenErrorKind.INVALID_GRANT


def test_network_failure_is_temporary() -> None:
    error = call_token_endpoint(zoho_client(), httpx.ConnectError("refused"))
    assert isinstance(error, TokenError) and error.kind is TokenErrorKind.TEMPORARY


def test_success_is_a_token_set_with_api_domain() -> None:
    body = {
        "access_token": "at",
        "expires_in": 3600,
        "api_domain": "https://www.zohoapis.eu",
        "token_type": "Bearer",
    }
    tokens = call_token_endpoint(zoho_client(), httpx.Response(200, json=body))
    assert isinstance(tokens, TokenSet)
    assert tokens.refresh_token is None  # Zoho keeps the refresh token: the stored one stays
    assert tokens.api_domain == "https://www.zohoapis.eu"
    assert tokens.expires_at == NOW + timedelta(hours=1)
