"""The loopback OAuth test server (tests/oauth_server) behaves like a real authorization server.

Exercised through authlib's httpx OAuth2Client, the client library the workers use. Needs
Node.js (the harness runs ``npm ci`` itself); no PostgreSQL, RabbitMQ or S3.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from tests.oauth_server.harness import (
    AuthorizationFlowError,
    OidcServer,
    loopback_client_kwargs,
    obtain_authorization_code,
    start_oidc_server,
)

# Tests of the test server itself, not of Conveyor: counted (and selectable) apart.
pytestmark = pytest.mark.oauth_harness

# Port 9 (discard) on loopback: the redirect is only read from the Location header, never sent.
REDIRECT_URI = "http://127.0.0.1:9/oauth/callback"
SCOPE = "openid offline_access"
ROTATING_TTL_S = 2
STATIC_TTL_S = 45


@dataclass(frozen=True)
class Client:
    client_id: str
    secret: str
    auth_method: str

    def metadata(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "client_secret": self.secret,
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": self.auth_method,
        }


POST_CLIENT = Client("conveyor-post", "post-secret-0123456789abcdef", "client_secret_post")
BASIC_CLIENT = Client("conveyor-basic", "basic-secret-0123456789abcdef", "client_secret_basic")
CLIENTS = [POST_CLIENT, BASIC_CLIENT]
CLIENT_IDS = [c.auth_method for c in CLIENTS]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, OidcServer]]:
    """Both servers of this module, started concurrently (node startup dominates)."""
    settings = {"rotating": (True, ROTATING_TTL_S), "static": (False, STATIC_TTL_S)}
    with ThreadPoolExecutor(max_workers=len(settings)) as pool:
        futures = {
            name: pool.submit(
                start_oidc_server,
                tmp_path_factory.mktemp(f"oidc-{name}"),
                clients=[c.metadata() for c in CLIENTS],
                rotate_refresh_tokens=rotate,
                access_token_ttl_s=ttl_s,
            )
            for name, (rotate, ttl_s) in settings.items()
        }
    started = {name: f.result() for name, f in futures.items() if f.exception() is None}
    try:
        for future in futures.values():
            future.result()  # re-raises a startup failure, after the others are recorded
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def rotating_server(servers: dict[str, OidcServer]) -> OidcServer:
    """Refresh token rotation on; 2-second access tokens."""
    return servers["rotating"]


@pytest.fixture(scope="module")
def static_server(servers: dict[str, OidcServer]) -> OidcServer:
    """Refresh token rotation off; 45-second access tokens."""
    return servers["static"]


def oauth_client(
    client: Client, *, secret: str | None = None, auth_method: str | None = None
) -> OAuth2Client:
    method = auth_method or client.auth_method
    return OAuth2Client(
        client_id=client.client_id,
        client_secret=secret if secret is not None else client.secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        redirect_uri=REDIRECT_URI,
        timeout=10.0,
        **loopback_client_kwargs(),
    )


def authorize(server: OidcServer, client: Client, *, pkce: bool = True) -> tuple[str, str | None]:
    """Return (code, code_verifier or None)."""
    verifier = generate_token(48) if pkce else None
    code = obtain_authorization_code(
        server,
        client_id=client.client_id,
        redirect_uri=REDIRECT_URI,
        scope=SCOPE,
        state=generate_token(16),
        code_challenge=create_s256_code_challenge(verifier) if verifier else None,
    )
    return code, verifier


def exchange(
    server: OidcServer, client: Client, code: str, verifier: str | None, **kw: Any
) -> dict[str, Any]:
    extra = {"code_verifier": verifier} if verifier else {}
    with oauth_client(client, **kw) as oauth:
        return dict(oauth.fetch_token(server.token_url, code=code, **extra))


def fresh_tokens(server: OidcServer, client: Client) -> dict[str, Any]:
    code, verifier = authorize(server, client)
    return exchange(server, client, code, verifier)


def refresh(server: OidcServer, client: Client, refresh_token: str, **kw: Any) -> dict[str, Any]:
    with oauth_client(client, **kw) as oauth:
        return dict(oauth.refresh_token(server.token_url, refresh_token=refresh_token))


def oauth_error(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(OAuthError) as excinfo:
        call(*args, **kwargs)
    return str(excinfo.value.error)


def test_discovery_matches_harness(rotating_server: OidcServer) -> None:
    meta = rotating_server.metadata
    assert rotating_server.issuer == f"http://127.0.0.1:{rotating_server.port}"
    assert meta["issuer"] == rotating_server.issuer
    assert rotating_server.authorize_url == f"{rotating_server.issuer}/auth"
    assert rotating_server.token_url == f"{rotating_server.issuer}/token"
    assert rotating_server.revocation_url == f"{rotating_server.issuer}/token/revocation"
    assert "S256" in meta["code_challenge_methods_supported"]
    assert {"client_secret_post", "client_secret_basic"} <= set(
        meta["token_endpoint_auth_methods_supported"]
    )
    assert {"authorization_code", "refresh_token"} <= set(meta["grant_types_supported"])


@pytest.mark.parametrize("client", CLIENTS, ids=CLIENT_IDS)
def test_code_exchange_with_pkce(static_server: OidcServer, client: Client) -> None:
    token = fresh_tokens(static_server, client)
    assert token["token_type"].lower() == "bearer"
    assert token["access_token"]
    assert token["refresh_token"]
    assert token["expires_in"] == STATIC_TTL_S


@pytest.mark.parametrize("client", CLIENTS, ids=CLIENT_IDS)
def test_code_exchange_without_pkce(static_server: OidcServer, client: Client) -> None:
    code, verifier = authorize(static_server, client, pkce=False)
    assert verifier is None
    assert exchange(static_server, client, code, None)["refresh_token"]


@pytest.mark.parametrize(
    ("client", "wrong_method"),
    [(POST_CLIENT, "client_secret_basic"), (BASIC_CLIENT, "client_secret_post")],
    ids=CLIENT_IDS,
)
def test_registered_auth_method_is_enforced(
    static_server: OidcServer, client: Client, wrong_method: str
) -> None:
    # So the successful exchanges above prove authlib sent credentials the registered way.
    code, verifier = authorize(static_server, client)
    error = oauth_error(exchange, static_server, client, code, verifier, auth_method=wrong_method)
    assert error == "invalid_client"


def test_pkce_verifier_is_checked(static_server: OidcServer) -> None:
    code, _ = authorize(static_server, POST_CLIENT)
    error = oauth_error(exchange, static_server, POST_CLIENT, code, generate_token(48))
    assert error == "invalid_grant"


def test_authorization_code_is_single_use(static_server: OidcServer) -> None:
    code, verifier = authorize(static_server, BASIC_CLIENT)
    exchange(static_server, BASIC_CLIENT, code, verifier)
    assert oauth_error(exchange, static_server, BASIC_CLIENT, code, verifier) == "invalid_grant"


@pytest.mark.parametrize("client", CLIENTS, ids=CLIENT_IDS)
@pytest.mark.parametrize("server_name", ["rotating_server", "static_server"])
def test_refresh_issues_new_access_token(
    request: pytest.FixtureRequest, server_name: str, client: Client
) -> None:
    server: OidcServer = request.getfixturevalue(server_name)
    first = fresh_tokens(server, client)
    second = refresh(server, client, first["refresh_token"])
    assert second["access_token"]
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"]


@pytest.mark.parametrize("client", CLIENTS, ids=CLIENT_IDS)
def test_rotation_on_old_refresh_token_fails(rotating_server: OidcServer, client: Client) -> None:
    first = fresh_tokens(rotating_server, client)
    second = refresh(rotating_server, client, first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    error = oauth_error(refresh, rotating_server, client, first["refresh_token"])
    assert error == "invalid_grant"


def test_rotation_reuse_of_old_refresh_token_revokes_grant(rotating_server: OidcServer) -> None:
    # oidc-provider's reuse detection: presenting a rotated-out refresh token revokes the whole
    # grant, so the newest refresh token dies too. A worker must persist every rotated token
    # before using it and never retry a refresh with the previous one.
    first = fresh_tokens(rotating_server, POST_CLIENT)
    second = refresh(rotating_server, POST_CLIENT, first["refresh_token"])
    oauth_error(refresh, rotating_server, POST_CLIENT, first["refresh_token"])
    error = oauth_error(refresh, rotating_server, POST_CLIENT, second["refresh_token"])
    assert error == "invalid_grant"


@pytest.mark.parametrize("client", CLIENTS, ids=CLIENT_IDS)
def test_rotation_off_old_refresh_token_keeps_working(
    static_server: OidcServer, client: Client
) -> None:
    refresh_token = fresh_tokens(static_server, client)["refresh_token"]
    access_tokens = set()
    for _ in range(3):
        token = refresh(static_server, client, refresh_token)
        assert token["refresh_token"] == refresh_token
        access_tokens.add(token["access_token"])
    assert len(access_tokens) == 3


@pytest.mark.parametrize("client", CLIENTS, ids=CLIENT_IDS)
@pytest.mark.parametrize("server_name", ["rotating_server", "static_server"])
def test_revoked_refresh_token_is_invalid_grant(
    request: pytest.FixtureRequest, server_name: str, client: Client
) -> None:
    server: OidcServer = request.getfixturevalue(server_name)
    refresh_token = fresh_tokens(server, client)["refresh_token"]
    with oauth_client(client) as oauth:
        response = oauth.revoke_token(
            server.revocation_url, token=refresh_token, token_type_hint="refresh_token"
        )
    assert response.status_code == 200
    assert oauth_error(refresh, server, client, refresh_token) == "invalid_grant"


@pytest.mark.parametrize("client", CLIENTS, ids=CLIENT_IDS)
def test_wrong_client_secret_is_invalid_client(static_server: OidcServer, client: Client) -> None:
    code, verifier = authorize(static_server, client)
    wrong = client.secret + "x"
    assert oauth_error(exchange, static_server, client, code, verifier, secret=wrong) == (
        "invalid_client"
    )
    refresh_token = fresh_tokens(static_server, client)["refresh_token"]
    assert oauth_error(refresh, static_server, client, refresh_token, secret=wrong) == (
        "invalid_client"
    )


@pytest.mark.parametrize(
    ("server_name", "ttl_s"), [("rotating_server", ROTATING_TTL_S), ("static_server", STATIC_TTL_S)]
)
def test_access_token_ttl_is_configured_ttl(
    request: pytest.FixtureRequest, server_name: str, ttl_s: int
) -> None:
    server: OidcServer = request.getfixturevalue(server_name)
    token = fresh_tokens(server, BASIC_CLIENT)
    assert token["expires_in"] == ttl_s
    assert refresh(server, BASIC_CLIENT, token["refresh_token"])["expires_in"] == ttl_s


def test_short_access_token_expires(rotating_server: OidcServer) -> None:
    access_token = fresh_tokens(rotating_server, POST_CLIENT)["access_token"]

    def active() -> bool:
        with oauth_client(POST_CLIENT) as oauth:
            response = oauth.introspect_token(
                rotating_server.introspection_url,
                token=access_token,
                token_type_hint="access_token",
            )
        response.raise_for_status()
        return bool(response.json()["active"])

    # oidc-provider counts whole seconds: exp = floor(issued) + TTL, so a 2 s token lives
    # between 1 and 2 seconds. Checked right after issue it must be active...
    assert active()
    # ...and inactive within TTL seconds, allowing slack for a busy machine.
    deadline = time.monotonic() + ROTATING_TTL_S + 3
    while active():
        assert time.monotonic() < deadline, "access token still active well past its TTL"
        time.sleep(0.1)


def test_error_redirect_raises(static_server: OidcServer) -> None:
    # A malformed PKCE challenge is reported by redirect to the client with error=...
    with pytest.raises(AuthorizationFlowError) as excinfo:
        obtain_authorization_code(
            static_server,
            client_id=POST_CLIENT.client_id,
            redirect_uri=REDIRECT_URI,
            scope=SCOPE,
            state="s",
            code_challenge="too-short",
        )
    assert excinfo.value.error == "invalid_request"


def test_unregistered_redirect_uri_raises(static_server: OidcServer) -> None:
    # Never redirected to an unregistered URI: the server answers with an error page instead.
    with pytest.raises(AuthorizationFlowError) as excinfo:
        obtain_authorization_code(
            static_server,
            client_id=POST_CLIENT.client_id,
            redirect_uri="http://127.0.0.1:9/elsewhere",
            scope=SCOPE,
            state="s",
        )
    assert excinfo.value.error == "invalid_redirect_uri"


def test_stop_ends_the_server(tmp_path: Path) -> None:
    server = start_oidc_server(
        tmp_path,
        clients=[POST_CLIENT.metadata()],
        rotate_refresh_tokens=False,
        access_token_ttl_s=5,
    )
    with httpx.Client(**loopback_client_kwargs()) as http:
        assert http.get(server.discovery_url).status_code == 200
    server.stop()
    server.stop()
    assert server.process.poll() is not None
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass
