"""Catalogue of the OAuth 2.0 providers Conveyor connects to: endpoints and quirks, as data.

Pure: no I/O, no clock. One frozen ``OAuthProvider`` describes one provider as configured for
one deployment (or, for Zoho, one connection: its accounts server depends on the user's data
centre). Build them with ``hubspot()``, ``salesforce()``, ``pipedrive()``, ``zoho()`` and
``generic()``, or from settings with ``provider_from_config()``.

Facts recorded here (checked against the providers' public documentation, 2026):

* HubSpot: authorize ``https://app.hubspot.com/oauth/authorize``; token
  ``https://api.hubapi.com/oauth/v1/token`` with client_id/client_secret in the form body;
  access tokens live 1800 s. The v1 endpoints are retired on 2027-02-16 in favour of the
  date-versioned ``/oauth/2026-03/token`` (+ ``/token/revoke``, RFC 7009 style), hence the
  overridable token URL. v1 revocation is ``DELETE /oauth/v1/refresh-tokens/{token}``.
* Salesforce: ``login.salesforce.com``, ``test.salesforce.com`` (sandboxes) or a My Domain
  host; ``/services/oauth2/{authorize,token,revoke}``. Token responses carry ``instance_url``
  and ``issued_at`` (epoch milliseconds) but no ``expires_in``: the access token lives as long
  as the org's session timeout, which must be configured. Refresh token rotation is an option
  of the connected / external client app.
* Pipedrive: ``https://oauth.pipedrive.com/oauth/{authorize,token,revoke}``; client
  authentication with HTTP Basic. Responses carry ``api_domain`` (the company's API host),
  which must be updated on every refresh. Refresh tokens expire after 60 days unused. Scopes
  are fixed in the app registration, not requested.
* Zoho: one accounts server per data centre; the authorization callback names the user's in
  ``accounts-server`` (and ``location``), which is only accepted from an allow-list
  (``zoho_accounts_server_from_callback``). Responses carry ``api_domain``. At most 10 token
  requests per 10 minutes per refresh token; at most 20 refresh tokens per user and client
  (the oldest is dropped silently). Errors may come with HTTP 200 and an ``error`` field.
  ``access_type=offline`` (and ``prompt=consent`` for a new refresh token) on authorization.
  API calls use ``Authorization: Zoho-oauthtoken <token>``, not ``Bearer``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Final
from urllib.parse import urlencode, urlsplit


class ProviderName(StrEnum):
    HUBSPOT = "hubspot"
    SALESFORCE = "salesforce"
    PIPEDRIVE = "pipedrive"
    ZOHO = "zoho"
    GENERIC = "generic"


class ClientAuthMethod(StrEnum):
    """How the client authenticates at the token (and revocation) endpoint (RFC 6749 2.3.1)."""

    CLIENT_SECRET_POST = "client_secret_post"
    """client_id and client_secret as form fields in the request body."""
    CLIENT_SECRET_BASIC = "client_secret_basic"
    """HTTP Basic with the form-urlencoded client_id and client_secret."""


class RevocationStyle(StrEnum):
    RFC7009 = "rfc7009"
    """POST form ``token`` (+ ``token_type_hint``) to the URL, with client authentication."""
    QUERY_PARAM = "query_param"
    """POST to the URL with ``?token=...`` (Zoho)."""
    PATH_DELETE = "path_delete"
    """DELETE ``{url}/{token}`` (HubSpot v1)."""


class RefreshTokenRotation(StrEnum):
    NEVER = "never"
    """The refresh token stays the same; responses to a refresh may omit it."""
    ALWAYS = "always"
    """Every refresh returns a new refresh token and invalidates the old one."""
    OPTIONAL = "optional"
    """Depends on the provider-side app settings: always store a returned refresh token."""


class ProviderConfigError(ValueError):
    """A provider definition or its configuration is invalid."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``max_requests`` token requests per ``window``, counted per ``per``."""

    max_requests: int
    window: timedelta
    per: str = "refresh_token"

    def __post_init__(self) -> None:
        if self.max_requests <= 0 or self.window <= timedelta(0):
            raise ProviderConfigError("rate limit needs a positive count and window")


@dataclass(frozen=True, slots=True)
class Revocation:
    url: str
    style: RevocationStyle


@dataclass(frozen=True, slots=True, kw_only=True)
class OAuthProvider:
    """Endpoints and behaviour of one OAuth 2.0 authorization server."""

    name: ProviderName
    authorize_url: str
    token_url: str
    revocation: Revocation | None
    client_auth_method: ClientAuthMethod
    supports_pkce: bool
    default_scopes: tuple[str, ...]
    scope_separator: str = " "
    expires_in_present: bool = True
    """Whether token responses state the access token lifetime (``expires_in``)."""
    expires_in_fields: tuple[str, ...] = ("expires_in",)
    """Fields holding the lifetime in seconds, in order of preference."""
    fallback_access_token_lifetime: timedelta = timedelta(hours=1)
    """Access token lifetime assumed when a response states none (Salesforce: session timeout)."""
    refresh_token_idle_lifetime: timedelta | None = None
    """A refresh token unused this long expires; None: no documented idle expiry."""
    refresh_token_rotation: RefreshTokenRotation = RefreshTokenRotation.NEVER
    token_rate_limit: RateLimit | None = None
    errors_may_have_http_200: bool = False
    """Token endpoint errors may arrive with status 200 and an ``error`` field (Zoho)."""
    returns_instance_url: bool = False
    returns_api_domain: bool = False
    extra_authorize_params: tuple[tuple[str, str], ...] = ()
    max_refresh_tokens_per_user: int | None = None
    """Issuing more silently invalidates the oldest (Zoho: 20 per user and client)."""
    api_auth_scheme: str = "Bearer"
    """Scheme of the Authorization header on API calls."""
    login_host: str | None = None
    """Salesforce only: the validated login host the endpoints are on."""
    accounts_server: str | None = None
    """Zoho only: the allow-listed accounts server (data centre) the endpoints are on."""

    def __post_init__(self) -> None:
        for label, url in (("authorize_url", self.authorize_url), ("token_url", self.token_url)):
            validate_endpoint_url(url, label=label)
        if self.revocation is not None:
            validate_endpoint_url(self.revocation.url, label="revocation url")
        if self.fallback_access_token_lifetime <= timedelta(0):
            raise ProviderConfigError("fallback_access_token_lifetime must be positive")
        if self.refresh_token_idle_lifetime is not None and self.refresh_token_idle_lifetime <= (
            timedelta(0)
        ):
            raise ProviderConfigError("refresh_token_idle_lifetime must be positive")
        if not self.expires_in_fields:
            raise ProviderConfigError("expires_in_fields must name at least one field")

    @property
    def supports_revocation(self) -> bool:
        return self.revocation is not None

    @property
    def revocation_url(self) -> str | None:
        return self.revocation.url if self.revocation is not None else None


_LOOPBACK_NAMES: Final = frozenset({"localhost"})


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_endpoint_url(url: str, *, label: str = "url") -> str:
    """An absolute https URL (plain http only for loopback hosts, i.e. tests), no fragment."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise ProviderConfigError(f"{label}: not a valid URL: {url!r}") from exc
    host = parts.hostname
    if not host:
        raise ProviderConfigError(f"{label}: no host in {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ProviderConfigError(f"{label}: credentials in URL are not allowed")
    if parts.fragment:
        raise ProviderConfigError(f"{label}: fragment not allowed in {url!r}")
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host)):
        return url
    raise ProviderConfigError(f"{label}: must be https (http only on loopback): {url!r}")


# --- HubSpot -------------------------------------------------------------------------------

HUBSPOT_AUTHORIZE_URL: Final = "https://app.hubspot.com/oauth/authorize"
HUBSPOT_TOKEN_URL_V1: Final = "https://api.hubapi.com/oauth/v1/token"
"""Retired 2027-02-16."""
HUBSPOT_REVOKE_URL_V1: Final = "https://api.hubapi.com/oauth/v1/refresh-tokens"
"""``DELETE {this}/{refresh_token}``; retired with the v1 token endpoint."""
HUBSPOT_TOKEN_URL_2026_03: Final = "https://api.hubapi.com/oauth/2026-03/token"
HUBSPOT_REVOKE_URL_2026_03: Final = "https://api.hubapi.com/oauth/2026-03/token/revoke"
HUBSPOT_ACCESS_TOKEN_LIFETIME: Final = timedelta(seconds=1800)
HUBSPOT_DEFAULT_SCOPES: Final = ("oauth", "crm.objects.contacts.read")

_HUBSPOT_DATED_TOKEN_PATH: Final = re.compile(r"^/oauth/\d{4}-\d{2}/token$")


def _hubspot_revocation(token_url: str, revocation_url: str | None) -> Revocation | None:
    if revocation_url is not None:
        style = (
            RevocationStyle.PATH_DELETE
            if revocation_url.rstrip("/") == HUBSPOT_REVOKE_URL_V1
            else RevocationStyle.RFC7009
        )
        return Revocation(revocation_url.rstrip("/"), style)
    if token_url == HUBSPOT_TOKEN_URL_V1:
        return Revocation(HUBSPOT_REVOKE_URL_V1, RevocationStyle.PATH_DELETE)
    if _HUBSPOT_DATED_TOKEN_PATH.match(urlsplit(token_url).path):
        return Revocation(f"{token_url}/revoke", RevocationStyle.RFC7009)
    return None


def hubspot(
    *,
    token_url: str = HUBSPOT_TOKEN_URL_V1,
    revocation_url: str | None = None,
    scopes: tuple[str, ...] = HUBSPOT_DEFAULT_SCOPES,
) -> OAuthProvider:
    """HubSpot. Override ``token_url`` (e.g. ``HUBSPOT_TOKEN_URL_2026_03``) before v1's end.

    Without ``revocation_url`` the revocation endpoint follows the token URL: v1 →
    ``DELETE .../refresh-tokens/{token}``; ``/oauth/YYYY-MM/token`` → ``.../token/revoke``;
    any other token URL → no revocation.
    """
    return OAuthProvider(
        name=ProviderName.HUBSPOT,
        authorize_url=HUBSPOT_AUTHORIZE_URL,
        token_url=token_url,
        revocation=_hubspot_revocation(token_url, revocation_url),
        client_auth_method=ClientAuthMethod.CLIENT_SECRET_POST,
        supports_pkce=True,
        default_scopes=scopes,
        fallback_access_token_lifetime=HUBSPOT_ACCESS_TOKEN_LIFETIME,
        refresh_token_rotation=RefreshTokenRotation.NEVER,
    )


# --- Salesforce ----------------------------------------------------------------------------

SALESFORCE_LOGIN_HOST: Final = "login.salesforce.com"
SALESFORCE_SANDBOX_HOST: Final = "test.salesforce.com"
SALESFORCE_DEFAULT_SESSION_LIFETIME: Final = timedelta(hours=2)
"""Salesforce's default session timeout; set the org's actual value in configuration."""
SALESFORCE_DEFAULT_SCOPES: Final = ("api", "refresh_token")

# MyDomain.my.salesforce.com, MyDomain--Sandbox.sandbox.my.salesforce.com,
# MyDomain-dev-ed.develop.my.salesforce.com, ...scratch.my.salesforce.com, etc.
_SALESFORCE_MY_DOMAIN: Final = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?"
    r"(?:--[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?)?"
    r"(?:\.(?:sandbox|develop|scratch|demo|patch|trailblaze))?"
    r"\.my\.salesforce\.com$"
)


def salesforce_login_host(value: str) -> str:
    """Validate a Salesforce login host: login/test.salesforce.com or a My Domain host.

    Accepts a bare host or an ``https://host`` URL; returns the lower-case host.
    """
    candidate = value.strip()
    if "://" in candidate:
        parts = urlsplit(candidate)
        if parts.scheme != "https" or parts.path not in ("", "/") or parts.query or parts.port:
            raise ProviderConfigError(f"not a Salesforce login URL: {value!r}")
        if parts.username is not None or parts.password is not None:
            raise ProviderConfigError(f"not a Salesforce login URL: {value!r}")
        candidate = parts.hostname or ""
    host = candidate.lower()
    if host in (SALESFORCE_LOGIN_HOST, SALESFORCE_SANDBOX_HOST) or _SALESFORCE_MY_DOMAIN.match(
        host
    ):
        return host
    raise ProviderConfigError(f"not a Salesforce login host: {value!r}")


def salesforce(
    *,
    login_host: str = SALESFORCE_LOGIN_HOST,
    session_lifetime: timedelta = SALESFORCE_DEFAULT_SESSION_LIFETIME,
    refresh_token_idle_lifetime: timedelta | None = None,
    scopes: tuple[str, ...] = SALESFORCE_DEFAULT_SCOPES,
) -> OAuthProvider:
    """Salesforce on ``login_host`` (production, ``test.salesforce.com`` or a My Domain).

    ``session_lifetime`` is the org's session timeout, used as the access token lifetime since
    responses carry none. ``refresh_token_idle_lifetime`` mirrors the app's refresh token
    policy ("expire if not used for ..."); None for the default "valid until revoked".
    """
    host = salesforce_login_host(login_host)
    base = f"https://{host}/services/oauth2"
    return OAuthProvider(
        name=ProviderName.SALESFORCE,
        authorize_url=f"{base}/authorize",
        token_url=f"{base}/token",
        revocation=Revocation(f"{base}/revoke", RevocationStyle.RFC7009),
        client_auth_method=ClientAuthMethod.CLIENT_SECRET_POST,
        supports_pkce=True,
        default_scopes=scopes,
        expires_in_present=False,
        fallback_access_token_lifetime=session_lifetime,
        refresh_token_idle_lifetime=refresh_token_idle_lifetime,
        refresh_token_rotation=RefreshTokenRotation.OPTIONAL,
        returns_instance_url=True,
        login_host=host,
    )


# --- Pipedrive -----------------------------------------------------------------------------

PIPEDRIVE_AUTHORIZE_URL: Final = "https://oauth.pipedrive.com/oauth/authorize"
PIPEDRIVE_TOKEN_URL: Final = "https://oauth.pipedrive.com/oauth/token"
PIPEDRIVE_REVOKE_URL: Final = "https://oauth.pipedrive.com/oauth/revoke"
PIPEDRIVE_REFRESH_TOKEN_IDLE_LIFETIME: Final = timedelta(days=60)


def pipedrive() -> OAuthProvider:
    """Pipedrive. Scopes come from the app registration; none are requested."""
    return OAuthProvider(
        name=ProviderName.PIPEDRIVE,
        authorize_url=PIPEDRIVE_AUTHORIZE_URL,
        token_url=PIPEDRIVE_TOKEN_URL,
        revocation=Revocation(PIPEDRIVE_REVOKE_URL, RevocationStyle.RFC7009),
        client_auth_method=ClientAuthMethod.CLIENT_SECRET_BASIC,
        supports_pkce=False,
        default_scopes=(),
        refresh_token_idle_lifetime=PIPEDRIVE_REFRESH_TOKEN_IDLE_LIFETIME,
        refresh_token_rotation=RefreshTokenRotation.OPTIONAL,
        returns_api_domain=True,
    )


# --- Zoho ----------------------------------------------------------------------------------

ZOHO_ACCOUNTS_SERVERS: Final[Mapping[str, str]] = {
    "us": "https://accounts.zoho.com",
    "eu": "https://accounts.zoho.eu",
    "in": "https://accounts.zoho.in",
    "au": "https://accounts.zoho.com.au",
    "jp": "https://accounts.zoho.jp",
    "cn": "https://accounts.zoho.com.cn",
    "ca": "https://accounts.zohocloud.ca",
    "sa": "https://accounts.zoho.sa",
}
"""Zoho data centre (the callback's ``location``) → accounts server. The only servers a token
request may go to."""
ZOHO_DEFAULT_ACCOUNTS_SERVER: Final = ZOHO_ACCOUNTS_SERVERS["us"]
ZOHO_DEFAULT_SCOPES: Final = ("ZohoCRM.modules.READ",)
ZOHO_TOKEN_RATE_LIMIT: Final = RateLimit(10, timedelta(minutes=10), per="refresh_token")
ZOHO_MAX_REFRESH_TOKENS_PER_USER: Final = 20

_ZOHO_HOST_TO_SERVER: Final = {
    urlsplit(url).hostname: url for url in ZOHO_ACCOUNTS_SERVERS.values()
}


class UntrustedAccountsServer(ProviderConfigError):
    """A Zoho ``accounts-server`` value that is not one of Zoho's accounts servers."""


def zoho_accounts_server(value: str) -> str:
    """Map ``value`` onto the allow-list; return the canonical server URL from the list.

    Accepted: exactly ``https://<allowed host>`` with an optional trailing ``/`` (case of
    the scheme and host ignored). Rejected: any other host, scheme, port, credentials, path,
    query or fragment. The returned string is always an entry of ``ZOHO_ACCOUNTS_SERVERS``,
    never the input.
    """
    if (
        not isinstance(value, str)
        or not value.isascii()
        or not value.isprintable()
        or (value != value.strip())
    ):
        raise UntrustedAccountsServer(f"untrusted Zoho accounts server {value!r}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise UntrustedAccountsServer(f"untrusted Zoho accounts server {value!r}") from exc
    server = _ZOHO_HOST_TO_SERVER.get(parts.hostname or "")
    if (
        server is None
        or parts.scheme.lower() != "https"
        or port is not None
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "?" in value
        or "#" in value
        or parts.netloc.lower() != (parts.hostname or "")
    ):
        raise UntrustedAccountsServer(f"untrusted Zoho accounts server {value!r}")
    return server


def zoho_accounts_server_from_callback(params: Mapping[str, str]) -> str:
    """The accounts server to exchange the code at, from the authorization callback's query.

    Uses ``accounts-server`` validated by ``zoho_accounts_server``; if ``location`` is also
    present it must name the same data centre. Without ``accounts-server`` the ``location``
    alone selects the server. Neither present: the default (US) server.
    """
    location = params.get("location")
    from_location: str | None = None
    if location is not None:
        from_location = ZOHO_ACCOUNTS_SERVERS.get(location.strip().lower())
        if from_location is None:
            raise UntrustedAccountsServer(f"unknown Zoho location {location!r}")
    raw_server = params.get("accounts-server")
    if raw_server is None:
        return from_location or ZOHO_DEFAULT_ACCOUNTS_SERVER
    server = zoho_accounts_server(raw_server)
    if from_location is not None and from_location != server:
        raise UntrustedAccountsServer(
            f"Zoho location {location!r} does not match accounts server {raw_server!r}"
        )
    return server


def zoho(
    *,
    accounts_server: str = ZOHO_DEFAULT_ACCOUNTS_SERVER,
    scopes: tuple[str, ...] = ZOHO_DEFAULT_SCOPES,
) -> OAuthProvider:
    """Zoho on one data centre's accounts server (validated against the allow-list)."""
    server = zoho_accounts_server(accounts_server)
    return OAuthProvider(
        name=ProviderName.ZOHO,
        authorize_url=f"{server}/oauth/v2/auth",
        token_url=f"{server}/oauth/v2/token",
        revocation=Revocation(f"{server}/oauth/v2/token/revoke", RevocationStyle.QUERY_PARAM),
        client_auth_method=ClientAuthMethod.CLIENT_SECRET_POST,
        supports_pkce=False,
        default_scopes=scopes,
        scope_separator=",",
        # Older responses gave expires_in in milliseconds next to expires_in_sec in seconds.
        expires_in_fields=("expires_in_sec", "expires_in"),
        refresh_token_rotation=RefreshTokenRotation.NEVER,
        token_rate_limit=ZOHO_TOKEN_RATE_LIMIT,
        errors_may_have_http_200=True,
        returns_api_domain=True,
        extra_authorize_params=(("access_type", "offline"), ("prompt", "consent")),
        max_refresh_tokens_per_user=ZOHO_MAX_REFRESH_TOKENS_PER_USER,
        api_auth_scheme="Zoho-oauthtoken",
        accounts_server=server,
    )


# --- Generic -------------------------------------------------------------------------------


def generic(
    *,
    authorize_url: str,
    token_url: str,
    client_auth_method: ClientAuthMethod,
    revocation_url: str | None = None,
    revocation_style: RevocationStyle = RevocationStyle.RFC7009,
    supports_pkce: bool = True,
    scopes: tuple[str, ...] = (),
    scope_separator: str = " ",
    access_token_lifetime: timedelta = timedelta(hours=1),
    refresh_token_idle_lifetime: timedelta | None = None,
    refresh_token_rotation: RefreshTokenRotation = RefreshTokenRotation.OPTIONAL,
    token_rate_limit: RateLimit | None = None,
) -> OAuthProvider:
    """Any RFC 6749 server, everything from configuration.

    ``access_token_lifetime`` applies only when a response has no ``expires_in``.
    """
    return OAuthProvider(
        name=ProviderName.GENERIC,
        authorize_url=authorize_url,
        token_url=token_url,
        revocation=(
            Revocation(revocation_url, revocation_style) if revocation_url is not None else None
        ),
        client_auth_method=client_auth_method,
        supports_pkce=supports_pkce,
        default_scopes=scopes,
        scope_separator=scope_separator,
        fallback_access_token_lifetime=access_token_lifetime,
        refresh_token_idle_lifetime=refresh_token_idle_lifetime,
        refresh_token_rotation=refresh_token_rotation,
        token_rate_limit=token_rate_limit,
    )


# --- From configuration --------------------------------------------------------------------


def authorization_url(
    provider: OAuthProvider,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    scopes: tuple[str, ...] | None = None,
    code_challenge: str | None = None,
) -> str:
    """The URL to send the user to: provider quirks (scope separator, extra parameters) applied.

    ``code_challenge`` (S256) is added only where the provider supports PKCE.
    """
    requested = provider.default_scopes if scopes is None else scopes
    params: list[tuple[str, str]] = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("state", state),
    ]
    if requested:
        params.append(("scope", provider.scope_separator.join(requested)))
    params.extend(provider.extra_authorize_params)
    if code_challenge is not None and provider.supports_pkce:
        params.extend([("code_challenge", code_challenge), ("code_challenge_method", "S256")])
    separator = "&" if urlsplit(provider.authorize_url).query else "?"
    return f"{provider.authorize_url}{separator}{urlencode(params)}"
