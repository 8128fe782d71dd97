"""Normalise token endpoint responses of the catalogued providers. Pure: no I/O, no clock.

``parse_token_response`` turns one HTTP response of a token request (authorization code or
refresh) into a ``TokenSet`` or a ``TokenError`` whose ``kind`` says what to do next:

=================  ========================================================================
kind               meaning / what the caller does
=================  ========================================================================
invalid_grant      code or refresh token is dead (expired, revoked, reused, user inactive):
                   the connection needs the user to authorize again; do not retry
invalid_client     our client credentials / redirect URI are wrong: a configuration error,
                   alert an operator; do not retry
rate_limited       retry later (``retry_after`` seconds when the provider said so; for Zoho
                   see ``provider.token_rate_limit``)
server_error       provider failure (5xx, ``server_error``): retry with backoff
temporary          provider unavailable (502/503/504, 408, ``temporarily_unavailable``):
                   retry with backoff
other              anything else (malformed request or response): do not retry blindly
=================  ========================================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Final

from shared.oauth.providers import OAuthProvider, ProviderName, validate_endpoint_url


class TokenErrorKind(StrEnum):
    INVALID_GRANT = "invalid_grant"
    INVALID_CLIENT = "invalid_client"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TEMPORARY = "temporary"
    OTHER = "other"


RETRYABLE_KINDS: Final = frozenset(
    {TokenErrorKind.RATE_LIMITED, TokenErrorKind.SERVER_ERROR, TokenErrorKind.TEMPORARY}
)


@dataclass(frozen=True, slots=True)
class TokenSet:
    """A successful token response. ``None`` fields were not in the response: keep the stored
    value (the current refresh token when not rotated; the last ``api_domain``/``instance_url``).
    Token values are left out of ``repr`` so they do not end up in logs."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_at: datetime
    instance_url: str | None = None
    api_domain: str | None = None
    scope: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class TokenError:
    kind: TokenErrorKind
    status_code: int
    error: str | None = None
    """The provider's own error code, as sent (``invalid_code``, ``BAD_REFRESH_TOKEN``, ...)."""
    description: str | None = None
    retry_after: float | None = None
    """Seconds to wait before retrying, when the provider said (Retry-After); retryable only."""

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS


_STANDARD_ERRORS: Final[Mapping[str, TokenErrorKind]] = {
    # RFC 6749 section 5.2, plus the two authorization-endpoint codes some servers also use
    # at the token endpoint (4.1.2.1) and RFC 8628's slow_down.
    "invalid_grant": TokenErrorKind.INVALID_GRANT,
    "invalid_client": TokenErrorKind.INVALID_CLIENT,
    "unauthorized_client": TokenErrorKind.INVALID_CLIENT,
    "server_error": TokenErrorKind.SERVER_ERROR,
    "temporarily_unavailable": TokenErrorKind.TEMPORARY,
    "slow_down": TokenErrorKind.RATE_LIMITED,
    "rate_limit_exceeded": TokenErrorKind.RATE_LIMITED,
    "too_many_requests": TokenErrorKind.RATE_LIMITED,
}

_PROVIDER_ERRORS: Final[Mapping[ProviderName, Mapping[str, TokenErrorKind]]] = {
    ProviderName.HUBSPOT: {
        # v1 responses: {"status": "BAD_REFRESH_TOKEN", "message": ...} (newer ones also carry
        # the RFC 6749 "error" field, which takes precedence).
        "bad_refresh_token": TokenErrorKind.INVALID_GRANT,
        "bad_auth_code": TokenErrorKind.INVALID_GRANT,
        "expired_authentication": TokenErrorKind.INVALID_GRANT,
        "bad_client_id": TokenErrorKind.INVALID_CLIENT,
        "bad_client_secret": TokenErrorKind.INVALID_CLIENT,
        "bad_redirect_uri": TokenErrorKind.INVALID_CLIENT,
    },
    ProviderName.SALESFORCE: {
        "invalid_client_id": TokenErrorKind.INVALID_CLIENT,
        "invalid_client_credentials": TokenErrorKind.INVALID_CLIENT,
        "redirect_uri_mismatch": TokenErrorKind.INVALID_CLIENT,
        # The user or org is deactivated / the user lost access to the app: only a (new)
        # authorization by an active user helps.
        "inactive_user": TokenErrorKind.INVALID_GRANT,
        "inactive_org": TokenErrorKind.INVALID_GRANT,
        "invalid_app_access": TokenErrorKind.INVALID_GRANT,
    },
    ProviderName.ZOHO: {
        # Expired, revoked or unknown code / refresh token; arrives with HTTP 200.
        "invalid_code": TokenErrorKind.INVALID_GRANT,
        "invalid_client_secret": TokenErrorKind.INVALID_CLIENT,
        "invalid_redirect_uri": TokenErrorKind.INVALID_CLIENT,
        # The 10-per-10-minutes throttle: {"error": "Access Denied", "error_description":
        # "You have made too many requests continuously. ..."}.
        "access_denied": TokenErrorKind.RATE_LIMITED,
    },
}

_HUBSPOT_STATUS_FIELD: Final = "status"
_MAX_LIFETIME_S: Final = 10 * 366 * 24 * 3600
_SCOPE_SPLIT: Final = re.compile(r"[\s,]+")
_DIGITS: Final = re.compile(r"[0-9]{1,18}")


def _normalise_code(code: str) -> str:
    return re.sub(r"[\s-]+", "_", code.strip()).lower()


def _error_code(provider: OAuthProvider, body: Mapping[str, object]) -> str | None:
    error = body.get("error")
    if isinstance(error, str) and error.strip():
        return error
    if provider.name is ProviderName.HUBSPOT:
        status = body.get(_HUBSPOT_STATUS_FIELD)
        # HubSpot's generic API errors say "status": "error"; only the BAD_* codes are specific.
        if isinstance(status, str) and _normalise_code(status) in _PROVIDER_ERRORS[provider.name]:
            return status
    return None


def _description(body: Mapping[str, object]) -> str | None:
    for key in ("error_description", "message"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _kind_from_status(status_code: int) -> TokenErrorKind:
    if status_code == 429:
        return TokenErrorKind.RATE_LIMITED
    if status_code in (408, 425, 502, 503, 504):
        return TokenErrorKind.TEMPORARY
    if status_code >= 500:
        return TokenErrorKind.SERVER_ERROR
    if status_code == 401:
        return TokenErrorKind.INVALID_CLIENT
    return TokenErrorKind.OTHER


def classify_error(
    provider: OAuthProvider, status_code: int, error_code: str | None
) -> TokenErrorKind:
    """HTTP 429 is always rate limiting; otherwise a recognised error code decides, then the
    HTTP status."""
    if status_code == 429:
        return TokenErrorKind.RATE_LIMITED
    if error_code is not None:
        code = _normalise_code(error_code)
        kind = _PROVIDER_ERRORS.get(provider.name, {}).get(code) or _STANDARD_ERRORS.get(code)
        if kind is not None:
            return kind
    return _kind_from_status(status_code)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Retry-After as delta-seconds or an HTTP date (RFC 9110 10.2.3); None if unusable."""
    if value is None:
        return None
    text = value.strip()
    if _DIGITS.fullmatch(text):
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _whole_number(value: object) -> int | None:
    """An int, an integral float or a string of ASCII digits (at most 18); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _positive_seconds(value: object) -> int | None:
    seconds = _whole_number(value)
    return seconds if seconds is not None and 0 < seconds <= _MAX_LIFETIME_S else None


def _salesforce_issued_at(body: Mapping[str, object], now: datetime) -> datetime:
    """``issued_at`` is epoch milliseconds as a string; never later than ``now`` (clock skew
    must not extend a lifetime the response never stated)."""
    millis = _whole_number(body.get("issued_at"))
    if millis is None or millis <= 0:
        return now
    try:
        issued = datetime.fromtimestamp(millis / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return now
    return min(issued, now)


def _expires_at(provider: OAuthProvider, body: Mapping[str, object], now: datetime) -> datetime:
    for name in provider.expires_in_fields:
        seconds = _positive_seconds(body.get(name))
        if seconds is not None:
            return now + timedelta(seconds=seconds)
    lifetime = provider.fallback_access_token_lifetime
    start = _salesforce_issued_at(body, now) if provider.name is ProviderName.SALESFORCE else now
    if now - start >= lifetime:
        # A just-issued token cannot already be expired: a stale or bogus issued_at is ignored.
        start = now
    return start + lifetime


def _non_empty_string(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _url_or_none(value: object) -> str | None:
    text = _non_empty_string(value)
    if text is None:
        return None
    try:
        return validate_endpoint_url(text)
    except ValueError:
        return None


def _scope(value: object) -> tuple[str, ...] | None:
    if isinstance(value, str):
        return tuple(part for part in _SCOPE_SPLIT.split(value) if part)
    if isinstance(value, list | tuple) and all(isinstance(part, str) for part in value):
        return tuple(part for part in value if part)
    return None


def parse_token_response(
    provider: OAuthProvider,
    status_code: int,
    body: Mapping[str, object],
    *,
    now: datetime,
    headers: Mapping[str, str] | None = None,
) -> TokenSet | TokenError:
    """Normalise one token endpoint response.

    ``body`` is the decoded JSON object (pass ``{}`` when the body was not a JSON object);
    ``headers`` the response headers (only Retry-After is read); ``now`` an aware datetime
    taken when the response arrived. Never raises on odd bodies: unknown shapes become
    ``TokenError(kind=other)``.

    An ``instance_url`` / ``api_domain`` that is not an https URL is dropped (``None``) rather
    than failing the response, so a rotated refresh token in it is never lost.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    error_code = _error_code(provider, body)
    access_token = _non_empty_string(body.get("access_token"))
    if 200 <= status_code < 300 and error_code is None and access_token is not None:
        return TokenSet(
            access_token=access_token,
            refresh_token=_non_empty_string(body.get("refresh_token")),
            expires_at=_expires_at(provider, body, now),
            instance_url=_url_or_none(body.get("instance_url")),
            api_domain=_url_or_none(body.get("api_domain")),
            scope=_scope(body.get("scope")),
        )
    if 200 <= status_code < 300 and error_code is None:
        return TokenError(
            kind=TokenErrorKind.OTHER,
            status_code=status_code,
            description="token response without access_token",
        )
    kind = classify_error(provider, status_code, error_code)
    retry_after = (
        parse_retry_after(_header(headers, "retry-after"), now=now)
        if kind in RETRYABLE_KINDS
        else None
    )
    return TokenError(
        kind=kind,
        status_code=status_code,
        error=error_code,
        description=_description(body),
        retry_after=retry_after,
    )
