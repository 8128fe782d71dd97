"""Which providers this deployment is registered with: provider + client credentials.

Built from `Settings` (`CONVEYOR_OAUTH_<PROVIDER>_*`); a provider without client id and
secret is "not configured". Zoho's endpoints depend on the connection's accounts server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from shared.config import Settings
from shared.errors import PermanentError
from shared.oauth.provider_config import provider_from_config
from shared.oauth.providers import (
    HUBSPOT_DEFAULT_SCOPES,
    HUBSPOT_TOKEN_URL_V1,
    SALESFORCE_DEFAULT_SCOPES,
    SALESFORCE_DEFAULT_SESSION_LIFETIME,
    SALESFORCE_LOGIN_HOST,
    ZOHO_DEFAULT_ACCOUNTS_SERVER,
    ZOHO_DEFAULT_SCOPES,
    OAuthProvider,
    ProviderConfigError,
    ProviderName,
    hubspot,
    pipedrive,
    salesforce,
    zoho,
)


class UnknownProvider(PermanentError):
    code = "unknown_provider"


class ProviderNotConfigured(PermanentError):
    code = "provider_not_configured"


@dataclass(frozen=True)
class OAuthClient:
    """Our registration at one provider. The secret is kept out of `repr` (and logs)."""

    provider: OAuthProvider
    client_id: str
    client_secret: str = field(repr=False)
    scopes: tuple[str, ...]
    redirect_uri: str


def provider_name(value: str) -> ProviderName:
    try:
        return ProviderName(value)
    except ValueError:
        raise UnknownProvider(f"unknown OAuth provider {value!r}", provider=value) from None


def redirect_uri(settings: Settings, name: ProviderName) -> str:
    return f"{settings.public_url.rstrip('/')}/v1/oauth/{name.value}/callback"


def _scopes(raw: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if raw is None:
        return default
    return tuple(part for part in raw.replace(",", " ").split() if part)


def _credentials(settings: Settings, name: ProviderName) -> tuple[str, str] | None:
    client_id = getattr(settings, f"oauth_{name.value}_client_id")
    secret = getattr(settings, f"oauth_{name.value}_client_secret")
    if not client_id or secret is None or not secret.get_secret_value():
        return None
    return str(client_id), secret.get_secret_value()


def is_configured(settings: Settings, name: ProviderName) -> bool:
    if _credentials(settings, name) is None:
        return False
    if name is ProviderName.GENERIC:
        return bool(settings.oauth_generic_authorize_url and settings.oauth_generic_token_url)
    return True


def _provider(settings: Settings, name: ProviderName, accounts_server: str | None) -> OAuthProvider:
    raw = getattr(settings, f"oauth_{name.value}_scopes")
    if name is ProviderName.HUBSPOT:
        return hubspot(
            token_url=settings.oauth_hubspot_token_url or HUBSPOT_TOKEN_URL_V1,
            scopes=_scopes(raw, HUBSPOT_DEFAULT_SCOPES),
        )
    if name is ProviderName.SALESFORCE:
        lifetime = settings.oauth_salesforce_session_lifetime_s
        return salesforce(
            login_host=settings.oauth_salesforce_login_host or SALESFORCE_LOGIN_HOST,
            session_lifetime=(
                timedelta(seconds=lifetime) if lifetime else SALESFORCE_DEFAULT_SESSION_LIFETIME
            ),
            scopes=_scopes(raw, SALESFORCE_DEFAULT_SCOPES),
        )
    if name is ProviderName.PIPEDRIVE:
        return pipedrive()
    if name is ProviderName.ZOHO:
        server = accounts_server or ZOHO_DEFAULT_ACCOUNTS_SERVER
        return zoho(accounts_server=server, scopes=_scopes(raw, ZOHO_DEFAULT_SCOPES))
    config: dict[str, object] = {
        "provider": "generic",
        "authorize_url": settings.oauth_generic_authorize_url,
        "token_url": settings.oauth_generic_token_url,
        "client_auth_method": settings.oauth_generic_auth_method,
        "scopes": list(_scopes(raw, ())),
    }
    if settings.oauth_generic_revoke_url:
        config["revocation_url"] = settings.oauth_generic_revoke_url
    return provider_from_config(config)


def configured_client(
    settings: Settings, name: str, *, accounts_server: str | None = None
) -> OAuthClient:
    """The client for `name`; raises UnknownProvider / ProviderNotConfigured."""
    provider = provider_name(name)
    credentials = _credentials(settings, provider)
    if credentials is None or not is_configured(settings, provider):
        raise ProviderNotConfigured(f"OAuth provider {name!r} is not configured", provider=name)
    try:
        built = _provider(settings, provider, accounts_server)
    except ProviderConfigError as exc:
        raise ProviderNotConfigured(f"OAuth provider {name!r}: {exc}", provider=name) from None
    return OAuthClient(
        provider=built,
        client_id=credentials[0],
        client_secret=credentials[1],
        scopes=built.default_scopes,
        redirect_uri=redirect_uri(settings, provider),
    )


def provider_statuses(settings: Settings) -> dict[str, str]:
    return {
        name.value: "configured" if is_configured(settings, name) else "not configured"
        for name in ProviderName
    }


def idle_lifetimes(settings: Settings) -> dict[str, timedelta]:
    """Refresh token idle lifetime of every configured provider that documents one."""
    lifetimes: dict[str, timedelta] = {}
    for name in ProviderName:
        if is_configured(settings, name):
            lifetime = configured_client(settings, name.value).provider.refresh_token_idle_lifetime
            if lifetime is not None:
                lifetimes[name.value] = lifetime
    return lifetimes
