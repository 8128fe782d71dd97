"""Build a provider from deployment configuration (a mapping), refusing unknown keys."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Any, TypeVar

from shared.oauth.providers import (
    HUBSPOT_DEFAULT_SCOPES,
    HUBSPOT_TOKEN_URL_V1,
    SALESFORCE_DEFAULT_SCOPES,
    SALESFORCE_DEFAULT_SESSION_LIFETIME,
    SALESFORCE_LOGIN_HOST,
    ZOHO_DEFAULT_ACCOUNTS_SERVER,
    ZOHO_DEFAULT_SCOPES,
    ClientAuthMethod,
    OAuthProvider,
    ProviderConfigError,
    ProviderName,
    RateLimit,
    RefreshTokenRotation,
    RevocationStyle,
    generic,
    hubspot,
    pipedrive,
    salesforce,
    zoho,
)

_E = TypeVar("_E", bound=StrEnum)


class _Settings:
    """Typed, exhaustive reading of one provider's settings mapping."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = config
        self._used: set[str] = set()

    def _get(self, key: str) -> Any:
        self._used.add(key)
        return self._config.get(key)

    def string(self, key: str) -> str | None:
        value = self._get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ProviderConfigError(f"{key}: expected a non-empty string")
        return value

    def string_or(self, key: str, default: str) -> str:
        value = self.string(key)
        return default if value is None else value

    def required_string(self, key: str) -> str:
        value = self.string(key)
        if value is None:
            raise ProviderConfigError(f"{key}: required")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ProviderConfigError(f"{key}: expected true or false")
        return value

    def seconds(self, key: str) -> timedelta | None:
        value = self._get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ProviderConfigError(f"{key}: expected a positive whole number of seconds")
        return timedelta(seconds=value)

    def seconds_or(self, key: str, default: timedelta) -> timedelta:
        value = self.seconds(key)
        return default if value is None else value

    def scopes(self, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get("scopes")
        if value is None:
            return default
        if isinstance(value, str):
            return tuple(s for s in re.split(r"[\s,]+", value) if s)
        if isinstance(value, list | tuple) and all(isinstance(s, str) and s for s in value):
            return tuple(value)
        raise ProviderConfigError("scopes: expected a list of strings or a separated string")

    def rate_limit(self) -> RateLimit | None:
        count = self._get("rate_limit_count")
        window = self.seconds("rate_limit_window_s")
        if count is None and window is None:
            return None
        if isinstance(count, bool) or not isinstance(count, int) or window is None:
            raise ProviderConfigError("rate_limit_count and rate_limit_window_s go together")
        return RateLimit(count, window)

    def enum(self, key: str, kind: type[_E]) -> _E | None:
        value = self.string(key)
        if value is None:
            return None
        try:
            return kind(value)
        except ValueError as exc:
            allowed = ", ".join(member.value for member in kind)
            raise ProviderConfigError(f"{key}: {value!r} is not one of {allowed}") from exc

    def enum_or(self, key: str, kind: type[_E], default: _E) -> _E:
        value = self.enum(key, kind)
        return default if value is None else value

    def finish(self) -> None:
        unknown = sorted(set(self._config) - self._used)
        if unknown:
            raise ProviderConfigError(f"unknown provider setting(s): {', '.join(unknown)}")


def provider_from_config(config: Mapping[str, Any]) -> OAuthProvider:
    """Build a provider from a settings mapping (e.g. parsed from the deployment's config).

    Keys: ``provider`` (hubspot | salesforce | pipedrive | zoho | generic) and, per provider,
    ``scopes``; hubspot: ``token_url``, ``revocation_url``; salesforce: ``login_host``,
    ``session_lifetime_s``, ``refresh_token_idle_lifetime_s``; zoho: ``accounts_server``;
    generic: ``authorize_url``, ``token_url``, ``client_auth_method``, ``revocation_url``,
    ``revocation_style``, ``supports_pkce``, ``scope_separator``, ``access_token_lifetime_s``,
    ``refresh_token_idle_lifetime_s``, ``refresh_token_rotation``, ``rate_limit_count`` +
    ``rate_limit_window_s``. Unknown keys are an error (a typo must not pass silently).
    """
    s = _Settings(config)
    name = s.enum("provider", ProviderName)
    provider: OAuthProvider
    if name is ProviderName.HUBSPOT:
        provider = hubspot(
            token_url=s.string_or("token_url", HUBSPOT_TOKEN_URL_V1),
            revocation_url=s.string("revocation_url"),
            scopes=s.scopes(HUBSPOT_DEFAULT_SCOPES),
        )
    elif name is ProviderName.SALESFORCE:
        provider = salesforce(
            login_host=s.string_or("login_host", SALESFORCE_LOGIN_HOST),
            session_lifetime=s.seconds_or(
                "session_lifetime_s", SALESFORCE_DEFAULT_SESSION_LIFETIME
            ),
            refresh_token_idle_lifetime=s.seconds("refresh_token_idle_lifetime_s"),
            scopes=s.scopes(SALESFORCE_DEFAULT_SCOPES),
        )
    elif name is ProviderName.PIPEDRIVE:
        provider = pipedrive()
    elif name is ProviderName.ZOHO:
        provider = zoho(
            accounts_server=s.string_or("accounts_server", ZOHO_DEFAULT_ACCOUNTS_SERVER),
            scopes=s.scopes(ZOHO_DEFAULT_SCOPES),
        )
    elif name is ProviderName.GENERIC:
        provider = _generic_from_settings(s)
    else:
        raise ProviderConfigError("provider: required")
    s.finish()
    return provider


def _generic_from_settings(s: _Settings) -> OAuthProvider:
    auth_method = s.enum("client_auth_method", ClientAuthMethod)
    if auth_method is None:
        raise ProviderConfigError("client_auth_method: required")
    return generic(
        authorize_url=s.required_string("authorize_url"),
        token_url=s.required_string("token_url"),
        client_auth_method=auth_method,
        revocation_url=s.string("revocation_url"),
        revocation_style=s.enum_or("revocation_style", RevocationStyle, RevocationStyle.RFC7009),
        supports_pkce=s.boolean("supports_pkce", True),
        scopes=s.scopes(()),
        scope_separator=s.string_or("scope_separator", " "),
        access_token_lifetime=s.seconds_or("access_token_lifetime_s", timedelta(hours=1)),
        refresh_token_idle_lifetime=s.seconds("refresh_token_idle_lifetime_s"),
        refresh_token_rotation=s.enum_or(
            "refresh_token_rotation", RefreshTokenRotation, RefreshTokenRotation.OPTIONAL
        ),
        token_rate_limit=s.rate_limit(),
    )
