"""Calls to a provider's token and revocation endpoints (httpx + authlib client auth).

The caller passes the `httpx.Client` (tests and processes choose timeouts and transports);
responses are normalised by `token_response.parse_token_response`. Network failures become
`TokenError(kind=temporary)`, so callers handle one result type. Tokens are never logged.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Generator
from datetime import datetime
from functools import cache
from typing import Any

import httpx
import structlog
from authlib.oauth2.auth import ClientAuth

from shared.oauth.clients import OAuthClient
from shared.oauth.providers import RevocationStyle
from shared.oauth.token_response import (
    TokenError,
    TokenErrorKind,
    TokenSet,
    parse_token_response,
)

log = structlog.get_logger("oauth")

Clock = Callable[[], datetime]


@cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def make_http_client(timeout_s: float) -> httpx.Client:
    """A client for token endpoints: one shared SSL context (loading it costs ~70 ms)."""
    return httpx.Client(timeout=timeout_s, verify=_ssl_context())


class _ClientAuth(httpx.Auth):
    """Authlib's framework-free client authentication (RFC 6749 2.3.1) on an httpx request.

    Authlib's own httpx integration is deprecated (it warns on import), so we adapt its core.
    """

    requires_request_body = True

    def __init__(self, client: OAuthClient) -> None:
        method = client.provider.client_auth_method.value
        self._auth = ClientAuth(client.client_id, client.client_secret, method)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        url, headers, body = self._auth.prepare(
            request.method, str(request.url), dict(request.headers), request.content
        )
        body = body if isinstance(body, bytes) else str(body).encode()
        headers["Content-Length"] = str(len(body))
        yield httpx.Request(request.method, url, headers=headers, content=body)


def _client_auth(client: OAuthClient) -> _ClientAuth:
    return _ClientAuth(client)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _token_request(
    http: httpx.Client, client: OAuthClient, form: dict[str, str], clock: Clock
) -> TokenSet | TokenError:
    try:
        response = http.post(
            client.provider.token_url,
            data=form,
            auth=_client_auth(client),
            headers={"Accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        log.warning("oauth.token_request_failed", error=type(exc).__name__)
        return TokenError(TokenErrorKind.TEMPORARY, 0, "network", type(exc).__name__)
    return parse_token_response(
        client.provider,
        response.status_code,
        _json_object(response),
        now=clock(),
        headers=dict(response.headers),
    )


def exchange_code(
    http: httpx.Client, client: OAuthClient, *, code: str, code_verifier: str | None, clock: Clock
) -> TokenSet | TokenError:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri}
    if code_verifier is not None:
        form["code_verifier"] = code_verifier
    return _token_request(http, client, form, clock)


def refresh_grant(
    http: httpx.Client, client: OAuthClient, *, refresh_token: str, clock: Clock
) -> TokenSet | TokenError:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return _token_request(http, client, form, clock)


def revoke(http: httpx.Client, client: OAuthClient, *, token: str, hint: str) -> bool:
    """Revoke `token` at the provider; True if it said yes. No revocation endpoint: False."""
    revocation = client.provider.revocation
    if revocation is None:
        return False
    try:
        if revocation.style is RevocationStyle.PATH_DELETE:
            response = http.delete(f"{revocation.url}/{token}")
        elif revocation.style is RevocationStyle.QUERY_PARAM:
            response = http.post(revocation.url, params={"token": token})
        else:
            response = http.post(
                revocation.url,
                data={"token": token, "token_type_hint": hint},
                auth=_client_auth(client),
            )
    except httpx.HTTPError as exc:
        log.warning("oauth.revoke_failed", provider=client.provider.name, error=type(exc).__name__)
        return False
    return response.is_success
