"""Provider catalogue and token response normalisation (shared.oauth).

Response bodies below follow the shapes the providers document for their token endpoints
(values shortened or made up; token strings are placeholders).
"""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.oauth.provider_config import provider_from_config
from shared.oauth.providers import (
    HUBSPOT_REVOKE_URL_2026_03,
    HUBSPOT_REVOKE_URL_V1,
    HUBSPOT_TOKEN_URL_2026_03,
    ZOHO_ACCOUNTS_SERVERS,
    ClientAuthMethod,
    OAuthProvider,
    ProviderConfigError,
    ProviderName,
    RateLimit,
    RefreshTokenRotation,
    RevocationStyle,
    UntrustedAccountsServer,
    authorization_url,
    generic,
    hubspot,
    pipedrive,
    salesforce,
    salesforce_login_host,
    zoho,
    zoho_accounts_server,
    zoho_accounts_server_from_callback,
)
from shared.oauth.token_response import (
    TokenError,
    TokenErrorKind,
    TokenSet,
    parse_retry_after,
    parse_token_response,
)

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
ALLOWED_ZOHO = frozenset(ZOHO_ACCOUNTS_SERVERS.values())


def ok(result: TokenSet | TokenError) -> TokenSet:
    assert isinstance(result, TokenSet), result
    return result


def err(result: TokenSet | TokenError) -> TokenError:
    assert isinstance(result, TokenError), result
    return result


# --- catalogue -----------------------------------------------------------------------------


def test_hubspot_defaults() -> None:
    p = hubspot()
    assert p.name is ProviderName.HUBSPOT
    assert p.authorize_url == "https://app.hubspot.com/oauth/authorize"
    assert p.token_url == "https://api.hubapi.com/oauth/v1/token"
    assert p.client_auth_method is ClientAuthMethod.CLIENT_SECRET_POST
    assert p.expires_in_present
    assert p.fallback_access_token_lifetime == timedelta(seconds=1800)
    assert p.supports_pkce
    assert p.revocation is not None
    assert p.revocation.url == HUBSPOT_REVOKE_URL_V1
    assert p.revocation.style is RevocationStyle.PATH_DELETE


def test_hubspot_token_url_is_overridable_and_revocation_follows() -> None:
    dated = hubspot(token_url=HUBSPOT_TOKEN_URL_2026_03)
    assert dated.token_url == HUBSPOT_TOKEN_URL_2026_03
    assert dated.revocation_url == HUBSPOT_REVOKE_URL_2026_03
    assert dated.revocation is not None
    assert dated.revocation.style is RevocationStyle.RFC7009
    # An unknown layout gets no guessed revocation endpoint, unless one is configured.
    custom = hubspot(token_url="https://api.hubapi.com/oauth/v3/token")
    assert not custom.supports_revocation
    explicit = hubspot(
        token_url="https://api.hubapi.com/oauth/v3/token",
        revocation_url="https://api.hubapi.com/oauth/v3/revoke",
    )
    assert explicit.revocation_url == "https://api.hubapi.com/oauth/v3/revoke"


@pytest.mark.parametrize(
    ("login_host", "base"),
    [
        ("login.salesforce.com", "https://login.salesforce.com/services/oauth2"),
        ("test.salesforce.com", "https://test.salesforce.com/services/oauth2"),
        ("acme.my.salesforce.com", "https://acme.my.salesforce.com/services/oauth2"),
        (
            "https://Acme--UAT.sandbox.my.salesforce.com/",
            "https://acme--uat.sandbox.my.salesforce.com/services/oauth2",
        ),
    ],
)
def test_salesforce_hosts(login_host: str, base: str) -> None:
    p = salesforce(login_host=login_host, session_lifetime=timedelta(minutes=30))
    assert p.authorize_url == f"{base}/authorize"
    assert p.token_url == f"{base}/token"
    assert p.revocation_url == f"{base}/revoke"
    assert not p.expires_in_present
    assert p.fallback_access_token_lifetime == timedelta(minutes=30)
    assert p.refresh_token_rotation is RefreshTokenRotation.OPTIONAL
    assert p.returns_instance_url


@pytest.mark.parametrize(
    "host",
    [
        "evil.com",
        "login.salesforce.com.evil.com",
        "acme.my.salesforce.com.evil.com",
        "http://login.salesforce.com",
        "https://login.salesforce.com/path",
        "https://login.salesforce.com:8443",
        "https://user@login.salesforce.com",
        "my.salesforce.com",
        "",
    ],
)
def test_salesforce_rejects_foreign_hosts(host: str) -> None:
    with pytest.raises(ProviderConfigError):
        salesforce_login_host(host)


def test_pipedrive() -> None:
    p = pipedrive()
    assert p.authorize_url == "https://oauth.pipedrive.com/oauth/authorize"
    assert p.token_url == "https://oauth.pipedrive.com/oauth/token"
    assert p.client_auth_method is ClientAuthMethod.CLIENT_SECRET_BASIC
    assert p.refresh_token_idle_lifetime == timedelta(days=60)
    assert p.returns_api_domain
    assert p.default_scopes == ()


@pytest.mark.parametrize(("location", "server"), sorted(ZOHO_ACCOUNTS_SERVERS.items()))
def test_zoho_per_data_centre(location: str, server: str) -> None:
    p = zoho(accounts_server=server)
    assert p.accounts_server == server
    assert p.authorize_url == f"{server}/oauth/v2/auth"
    assert p.token_url == f"{server}/oauth/v2/token"
    assert p.revocation is not None
    assert p.revocation.url == f"{server}/oauth/v2/token/revoke"
    assert p.revocation.style is RevocationStyle.QUERY_PARAM
    assert p.token_rate_limit == RateLimit(10, timedelta(minutes=10), per="refresh_token")
    assert p.errors_may_have_http_200
    assert p.api_auth_scheme == "Zoho-oauthtoken"
    callback = {"code": "1000.x", "location": location, "accounts-server": server}
    assert zoho_accounts_server_from_callback(callback) == server


def test_zoho_servers_are_the_documented_ones() -> None:
    assert {urlsplit(s).hostname for s in ALLOWED_ZOHO} == {
        "accounts.zoho.com",
        "accounts.zoho.eu",
        "accounts.zoho.in",
        "accounts.zoho.com.au",
        "accounts.zoho.jp",
        "accounts.zoho.com.cn",
        "accounts.zohocloud.ca",
        "accounts.zoho.sa",
    }


@pytest.mark.parametrize(
    "value",
    [
        "https://accounts.zoho.eu.evil.com",
        "https://evil.com/accounts.zoho.eu",
        "https://evil.com?https://accounts.zoho.eu",
        "https://accounts.zoho.eu@evil.com",
        "https://evil.com@accounts.zoho.eu",
        "http://accounts.zoho.eu",
        "https://accounts.zoho.eu:443",
        "https://accounts.zoho.eu:8443",
        "https://accounts.zoho.eu/oauth/v2/token",
        "https://accounts.zoho.eu?",
        "https://accounts.zoho.eu#x",
        "https://accounts.zoho.eu.",
        " https://accounts.zoho.eu",
        "https://accounts.zoho.eu\n",
        "https://accounts.zoho.e\tu",
        "https://accounts.zoho.uk",
        "https://accounts.zoho.com.evil",
        "accounts.zoho.eu",
        "//accounts.zoho.eu",
        "https://[::1]",
        "https://acc\u043eunts.zoho.eu",  # Cyrillic o
        "",
    ],
)
def test_zoho_accounts_server_rejects(value: str) -> None:
    with pytest.raises(UntrustedAccountsServer):
        zoho_accounts_server(value)
    with pytest.raises(UntrustedAccountsServer):
        zoho_accounts_server_from_callback({"accounts-server": value})


def test_zoho_accounts_server_returns_canonical_entry() -> None:
    assert zoho_accounts_server("HTTPS://ACCOUNTS.ZOHO.EU/") == "https://accounts.zoho.eu"


def test_zoho_callback_location_must_match_server() -> None:
    with pytest.raises(UntrustedAccountsServer):
        zoho_accounts_server_from_callback(
            {"location": "us", "accounts-server": "https://accounts.zoho.eu"}
        )
    with pytest.raises(UntrustedAccountsServer):
        zoho_accounts_server_from_callback({"location": "xx"})
    assert zoho_accounts_server_from_callback({"location": "EU"}) == "https://accounts.zoho.eu"
    assert zoho_accounts_server_from_callback({}) == "https://accounts.zoho.com"


def _recase(text: str, upper: list[bool]) -> str:
    return "".join(c.upper() if u else c for c, u in zip(text, upper, strict=False))


# Hosts close to the allowed ones, and arbitrary text around them.
_near_hosts = st.sampled_from(sorted(urlsplit(s).hostname or "" for s in ALLOWED_ZOHO))
_noise = st.text(alphabet=string.printable + "\u043e\u0430\u00a0\u200b", max_size=12)
_candidates = st.one_of(
    st.text(max_size=60),
    st.builds(lambda a, h, b: f"{a}{h}{b}", _noise, _near_hosts, _noise),
    st.builds(lambda s, h, t: f"{s}://{h}{t}", _noise, _near_hosts, _noise),
    st.builds(lambda h, t: f"https://{h}{t}", _near_hosts, _noise),
    st.builds(lambda p, h: f"https://{p}{h}", _noise, _near_hosts),
    # Exactly-allowed hosts with random casing and an optional trailing slash.
    st.builds(
        lambda h, upper, slash: f"https://{_recase(h, upper)}{slash}",
        _near_hosts,
        st.lists(st.booleans(), min_size=30, max_size=30),
        st.sampled_from(["", "/", "//"]),
    ),
)


@settings(max_examples=300, deadline=None)
@given(_candidates)
def test_zoho_accounts_server_never_accepts_a_host_outside_the_list(value: str) -> None:
    try:
        server = zoho_accounts_server(value)
    except UntrustedAccountsServer:
        return
    assert server in ALLOWED_ZOHO
    # Accepted only when the input itself names that very host over https, nothing more.
    parts = urlsplit(value)
    assert parts.scheme.lower() == "https"
    assert parts.hostname == urlsplit(server).hostname
    assert value.rstrip("/").lower() == server


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["accounts-server", "location", "code", "state"]),
        st.one_of(_candidates, st.sampled_from(sorted(ZOHO_ACCOUNTS_SERVERS))),
    )
)
def test_zoho_callback_always_yields_an_allowed_server(params: dict[str, str]) -> None:
    try:
        server = zoho_accounts_server_from_callback(params)
    except UntrustedAccountsServer:
        return
    assert server in ALLOWED_ZOHO


def test_generic_allows_http_only_on_loopback() -> None:
    p = generic(
        authorize_url="http://127.0.0.1:8080/auth",
        token_url="http://127.0.0.1:8080/token",
        client_auth_method=ClientAuthMethod.CLIENT_SECRET_BASIC,
        revocation_url="http://127.0.0.1:8080/token/revocation",
    )
    assert p.supports_revocation
    with pytest.raises(ProviderConfigError):
        generic(
            authorize_url="http://auth.example.com/auth",
            token_url="https://auth.example.com/token",
            client_auth_method=ClientAuthMethod.CLIENT_SECRET_POST,
        )


def test_provider_from_config() -> None:
    assert provider_from_config({"provider": "pipedrive"}) == pipedrive()
    hs = provider_from_config({"provider": "hubspot", "token_url": HUBSPOT_TOKEN_URL_2026_03})
    assert hs.token_url == HUBSPOT_TOKEN_URL_2026_03
    sf = provider_from_config(
        {"provider": "salesforce", "login_host": "test.salesforce.com", "session_lifetime_s": 900}
    )
    assert sf.token_url == "https://test.salesforce.com/services/oauth2/token"
    assert sf.fallback_access_token_lifetime == timedelta(minutes=15)
    zo = provider_from_config(
        {"provider": "zoho", "accounts_server": "https://accounts.zoho.in", "scopes": "A.b,C.d"}
    )
    assert zo.token_url == "https://accounts.zoho.in/oauth/v2/token"
    assert zo.default_scopes == ("A.b", "C.d")
    gen = provider_from_config(
        {
            "provider": "generic",
            "authorize_url": "https://id.example.com/authorize",
            "token_url": "https://id.example.com/token",
            "client_auth_method": "client_secret_basic",
            "access_token_lifetime_s": 600,
            "rate_limit_count": 5,
            "rate_limit_window_s": 60,
        }
    )
    assert gen.client_auth_method is ClientAuthMethod.CLIENT_SECRET_BASIC
    assert gen.token_rate_limit == RateLimit(5, timedelta(seconds=60))


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"provider": "nope"},
        {"provider": "pipedrive", "token_ur1": "https://x.example.com"},
        {"provider": "zoho", "accounts_server": "https://accounts.zoho.eu.evil.com"},
        {"provider": "salesforce", "session_lifetime_s": -5},
        {"provider": "generic", "token_url": "https://x.example.com/token"},
        {"provider": "hubspot", "token_url": "http://api.hubapi.com/oauth/v1/token"},
    ],
)
def test_provider_from_config_rejects(config: dict[str, Any]) -> None:
    with pytest.raises(ProviderConfigError):
        provider_from_config(config)


def test_authorization_url_applies_quirks() -> None:
    z = parse_qs(
        urlsplit(
            authorization_url(
                zoho(scopes=("ZohoCRM.modules.READ", "ZohoCRM.settings.READ")),
                client_id="1000.C",
                redirect_uri="https://conveyor.example.com/cb",
                state="s1",
                code_challenge="c" * 43,
            )
        ).query
    )
    assert z["scope"] == ["ZohoCRM.modules.READ,ZohoCRM.settings.READ"]
    assert z["access_type"] == ["offline"]
    assert z["prompt"] == ["consent"]
    assert "code_challenge" not in z  # Zoho: no PKCE in the catalogue

    pd = parse_qs(
        urlsplit(
            authorization_url(
                pipedrive(), client_id="c", redirect_uri="https://x.example.com/cb", state="s"
            )
        ).query
    )
    assert "scope" not in pd

    sf = parse_qs(
        urlsplit(
            authorization_url(
                salesforce(),
                client_id="c",
                redirect_uri="https://x.example.com/cb",
                state="s",
                code_challenge="c" * 43,
            )
        ).query
    )
    assert sf["scope"] == ["api refresh_token"]
    assert sf["code_challenge_method"] == ["S256"]


# --- token responses -----------------------------------------------------------------------


def test_hubspot_success_expires_in_1800() -> None:
    body = {
        "token_type": "bearer",
        "refresh_token": "hs-refresh",
        "access_token": "hs-access",
        "expires_in": 1800,
    }
    tokens = ok(parse_token_response(hubspot(), 200, body, now=NOW))
    assert tokens.access_token == "hs-access"
    assert tokens.refresh_token == "hs-refresh"
    assert tokens.expires_at == NOW + timedelta(seconds=1800)
    assert tokens.instance_url is None
    assert tokens.api_domain is None


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (
            {
                "status": "BAD_REFRESH_TOKEN",
                "message": "missing or invalid refresh token",
                "correlationId": "aeb5f871-7f07-4993-9211-075dc63e7cbf",
            },
            TokenErrorKind.INVALID_GRANT,
        ),
        (
            {
                "error": "invalid_grant",
                "error_description": "refresh token is invalid, expired or revoked",
                "status": "BAD_REFRESH_TOKEN",
                "message": "refresh token is invalid, expired or revoked",
            },
            TokenErrorKind.INVALID_GRANT,
        ),
        ({"status": "BAD_CLIENT_ID", "message": "missing or invalid client_id"}, "invalid_client"),
        ({"status": "error", "message": "Invalid input"}, TokenErrorKind.OTHER),
    ],
)
def test_hubspot_errors(body: dict[str, Any], kind: TokenErrorKind) -> None:
    error = err(parse_token_response(hubspot(), 400, body, now=NOW))
    assert error.kind == kind
    assert error.description == body["message"]
    assert not error.retryable


def test_hubspot_429_with_retry_after() -> None:
    body = {
        "status": "error",
        "message": "You have reached your secondly limit.",
        "errorType": "RATE_LIMIT",
        "policyName": "SECONDLY",
    }
    error = err(parse_token_response(hubspot(), 429, body, now=NOW, headers={"Retry-After": "7"}))
    assert error.kind is TokenErrorKind.RATE_LIMITED
    assert error.retryable
    assert error.retry_after == 7.0


def test_salesforce_missing_expires_in_uses_session_lifetime() -> None:
    issued = NOW - timedelta(seconds=3)
    body = {
        "access_token": "00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog.39AsX.LVpxezPwuX5VAIrrbb",
        "refresh_token": "5Aep861KIwKdekr90I4iHdtDgWwRoG7O_6uHrgJ.yVtMS0UaGxRYypz9sgjvgpSTAbQ",
        "signature": "CMJ4l+CCaPQiKjoOEwEig9H4wqhpuLSk4J2urAe+fVg=",
        "scope": "refresh_token api",
        "instance_url": "https://acme.my.salesforce.com",
        "id": "https://login.salesforce.com/id/00Dxx0000001gPLEAY/005xx000001SwiUAAS",
        "token_type": "Bearer",
        "issued_at": str(int(issued.timestamp() * 1000)),
    }
    p = salesforce(session_lifetime=timedelta(minutes=45))
    tokens = ok(parse_token_response(p, 200, body, now=NOW))
    assert tokens.expires_at == issued + timedelta(minutes=45)
    assert tokens.instance_url == "https://acme.my.salesforce.com"
    assert tokens.scope == ("refresh_token", "api")
    assert tokens.refresh_token is not None


def test_salesforce_refresh_without_new_refresh_token_and_future_issued_at() -> None:
    body = {
        "access_token": "00Dxx!new",
        "instance_url": "https://acme.my.salesforce.com",
        "token_type": "Bearer",
        "issued_at": str(int((NOW + timedelta(minutes=5)).timestamp() * 1000)),
    }
    tokens = ok(parse_token_response(salesforce(), 200, body, now=NOW))
    assert tokens.refresh_token is None  # not rotated: keep the stored one
    # The provider's clock being ahead must not lengthen the assumed lifetime.
    assert tokens.expires_at == NOW + timedelta(hours=2)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (
            {"error": "invalid_grant", "error_description": "expired access/refresh token"},
            TokenErrorKind.INVALID_GRANT,
        ),
        (
            {"error": "invalid_client_id", "error_description": "client identifier invalid"},
            TokenErrorKind.INVALID_CLIENT,
        ),
        (
            {"error": "invalid_client", "error_description": "invalid client credentials"},
            TokenErrorKind.INVALID_CLIENT,
        ),
        (
            {"error": "inactive_user", "error_description": "user is inactive"},
            TokenErrorKind.INVALID_GRANT,
        ),
        (
            {"error": "unsupported_grant_type", "error_description": "grant type not supported"},
            TokenErrorKind.OTHER,
        ),
    ],
)
def test_salesforce_errors(body: dict[str, Any], kind: TokenErrorKind) -> None:
    error = err(parse_token_response(salesforce(), 400, body, now=NOW))
    assert error.kind is kind
    assert error.error == body["error"]
    assert error.retry_after is None


def test_pipedrive_api_domain_on_every_response() -> None:
    first = {
        "access_token": "v1:pd-access-1",
        "token_type": "Bearer",
        "refresh_token": "pd-refresh",
        "scope": "base,deals:full",
        "expires_in": 3599,
        "api_domain": "https://acme.pipedrive.com",
    }
    tokens = ok(parse_token_response(pipedrive(), 200, first, now=NOW))
    assert tokens.api_domain == "https://acme.pipedrive.com"
    assert tokens.scope == ("base", "deals:full")
    assert tokens.expires_at == NOW + timedelta(seconds=3599)
    refreshed = {
        **first,
        "access_token": "v1:pd-access-2",
        "api_domain": "https://acme2.pipedrive.com",
    }
    assert ok(parse_token_response(pipedrive(), 200, refreshed, now=NOW)).api_domain == (
        "https://acme2.pipedrive.com"
    )


def test_unusable_api_domain_is_dropped_not_fatal() -> None:
    body = {"access_token": "a", "refresh_token": "r2", "api_domain": "javascript:alert(1)"}
    tokens = ok(parse_token_response(pipedrive(), 200, body, now=NOW))
    assert tokens.api_domain is None
    assert tokens.refresh_token == "r2"


def test_zoho_success() -> None:
    body = {
        "access_token": "1000.2deaf8d0c268e3c85daa2a013a843b10.703adef2bb337b8ca36cfc5d7b83cf24",
        "refresh_token": "1000.18e983526f0ca8575ea9c53b0cd5bb58.1bd83a6f2e22c3a7e1309d96ae439cc1",
        "scope": "ZohoCRM.modules.READ",
        "api_domain": "https://www.zohoapis.eu",
        "token_type": "Bearer",
        "expires_in": 3600,
    }
    tokens = ok(
        parse_token_response(zoho(accounts_server="https://accounts.zoho.eu"), 200, body, now=NOW)
    )
    assert tokens.api_domain == "https://www.zohoapis.eu"
    assert tokens.expires_at == NOW + timedelta(hours=1)


def test_zoho_legacy_expires_in_milliseconds() -> None:
    body = {"access_token": "1000.a", "expires_in_sec": 3600, "expires_in": 3600000}
    tokens = ok(parse_token_response(zoho(), 200, body, now=NOW))
    assert tokens.expires_at == NOW + timedelta(seconds=3600)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"error": "invalid_code"}, TokenErrorKind.INVALID_GRANT),
        ({"error": "invalid_client"}, TokenErrorKind.INVALID_CLIENT),
        ({"error": "invalid_client_secret"}, TokenErrorKind.INVALID_CLIENT),
        ({"error": "invalid_redirect_uri"}, TokenErrorKind.INVALID_CLIENT),
    ],
)
def test_zoho_error_with_http_200(body: dict[str, Any], kind: TokenErrorKind) -> None:
    error = err(parse_token_response(zoho(), 200, body, now=NOW))
    assert error.kind is kind
    assert error.status_code == 200


def test_zoho_throttle_is_rate_limited() -> None:
    body = {
        "error_description": "You have made too many requests continuously. Please try again "
        "after some time.",
        "error": "Access Denied",
        "status": "failure",
    }
    error = err(parse_token_response(zoho(), 400, body, now=NOW))
    assert error.kind is TokenErrorKind.RATE_LIMITED
    assert error.retryable
    assert error.retry_after is None  # Zoho gives none; see provider.token_rate_limit
    assert error.description is not None and "too many requests" in error.description


@pytest.mark.parametrize(
    "provider", [hubspot(), salesforce(), pipedrive(), zoho()], ids=lambda p: str(p.name)
)
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, TokenErrorKind.SERVER_ERROR),
        (501, TokenErrorKind.SERVER_ERROR),
        (502, TokenErrorKind.TEMPORARY),
        (503, TokenErrorKind.TEMPORARY),
        (504, TokenErrorKind.TEMPORARY),
    ],
)
def test_5xx_is_retryable(provider: OAuthProvider, status: int, kind: TokenErrorKind) -> None:
    error = err(parse_token_response(provider, status, {}, now=NOW))
    assert error.kind is kind
    assert error.retryable


def test_503_retry_after_http_date() -> None:
    headers = {"retry-after": "Fri, 27 Nov 2026 12:00:30 GMT"}
    error = err(parse_token_response(pipedrive(), 503, {}, now=NOW, headers=headers))
    assert error.kind is TokenErrorKind.TEMPORARY
    assert error.retry_after == 30.0


def test_standard_error_codes() -> None:
    p = generic(
        authorize_url="https://id.example.com/a",
        token_url="https://id.example.com/t",
        client_auth_method=ClientAuthMethod.CLIENT_SECRET_BASIC,
    )
    cases = {
        (401, "invalid_client"): TokenErrorKind.INVALID_CLIENT,
        (400, "unauthorized_client"): TokenErrorKind.INVALID_CLIENT,
        (400, "invalid_grant"): TokenErrorKind.INVALID_GRANT,
        (400, "invalid_request"): TokenErrorKind.OTHER,
        (400, "temporarily_unavailable"): TokenErrorKind.TEMPORARY,
        (400, "server_error"): TokenErrorKind.SERVER_ERROR,
        (429, "invalid_grant"): TokenErrorKind.RATE_LIMITED,
        # Zoho's code means nothing special elsewhere.
        (400, "invalid_code"): TokenErrorKind.OTHER,
    }
    for (status, code), kind in cases.items():
        assert err(parse_token_response(p, status, {"error": code}, now=NOW)).kind is kind, code
    assert err(parse_token_response(p, 401, {}, now=NOW)).kind is TokenErrorKind.INVALID_CLIENT


def test_success_status_without_access_token_is_other() -> None:
    error = err(parse_token_response(hubspot(), 200, {"token_type": "bearer"}, now=NOW))
    assert error.kind is TokenErrorKind.OTHER


def test_token_values_stay_out_of_repr() -> None:
    tokens = ok(
        parse_token_response(
            hubspot(), 200, {"access_token": "SECRET-A", "refresh_token": "SECRET-R"}, now=NOW
        )
    )
    assert "SECRET" not in repr(tokens)


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError):
        parse_token_response(hubspot(), 200, {"access_token": "a"}, now=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("soon", None),
        ("-3", None),
        ("²", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_token_keys = st.sampled_from(
    [
        "access_token",
        "refresh_token",
        "expires_in",
        "expires_in_sec",
        "issued_at",
        "instance_url",
        "api_domain",
        "scope",
        "error",
        "error_description",
        "status",
        "message",
    ]
)
_providers = st.sampled_from([hubspot(), salesforce(), pipedrive(), zoho()])
_statuses = st.one_of(
    st.sampled_from([200, 201, 400, 401, 403, 429, 500, 502, 503]),
    st.integers(min_value=100, max_value=599),
)
_bodies = st.one_of(
    st.dictionaries(st.one_of(_token_keys, st.text(max_size=8)), _json_values, max_size=8),
    st.fixed_dictionaries(
        {"access_token": st.text(min_size=1, max_size=20)},
        optional={
            "refresh_token": _json_values,
            "expires_in": st.one_of(_json_values, st.integers(), st.from_regex(r"[0-9]{1,25}")),
            "expires_in_sec": _json_values,
            "issued_at": st.one_of(_json_values, st.from_regex(r"[0-9]{1,25}")),
            "instance_url": st.one_of(_json_values, st.just("https://acme.my.salesforce.com")),
            "api_domain": _json_values,
            "scope": _json_values,
            "error": _json_values,
        },
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    provider=_providers,
    status=_statuses,
    body=_bodies,
    retry_after=st.one_of(st.none(), st.text(max_size=30)),
)
def test_parser_is_total_and_consistent(
    provider: OAuthProvider, status: int, body: dict[str, Any], retry_after: str | None
) -> None:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    result = parse_token_response(provider, status, body, now=NOW, headers=headers)
    if isinstance(result, TokenSet):
        assert 200 <= status < 300
        assert result.access_token
        assert result.expires_at > NOW
        # A string "error" field always wins over an access_token (Zoho's 200-with-error).
        error = body.get("error")
        assert not isinstance(error, str) or not error.strip()
    else:
        assert result.status_code == status
        if status == 429:
            assert result.kind is TokenErrorKind.RATE_LIMITED
        if result.retry_after is not None:
            assert result.retryable
            assert result.retry_after >= 0
