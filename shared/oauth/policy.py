"""When to refresh, and whether a provider's token rate limit allows it now. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from shared.oauth.providers import RateLimit

MAX_IDLE_MARGIN = timedelta(days=7)


def idle_margin(idle_lifetime: timedelta) -> timedelta:
    """Refresh an idle connection this long before its refresh token would lapse."""
    return min(MAX_IDLE_MARGIN, idle_lifetime / 4)


def refresh_due(
    *,
    now: datetime,
    expires_at: datetime | None,
    last_used_at: datetime,
    margin: timedelta,
    idle_lifetime: timedelta | None = None,
) -> bool:
    """True if the access token expires within `margin` (or its expiry is unknown), or the
    refresh token has been idle long enough to lapse soon."""
    if expires_at is None or expires_at - now <= margin:
        return True
    if idle_lifetime is None:
        return False
    return now >= last_used_at + idle_lifetime - idle_margin(idle_lifetime)


def recent_requests(
    requests: Sequence[datetime], now: datetime, limit: RateLimit | None
) -> list[datetime]:
    """The token requests still inside the limit's window (all dropped without a limit)."""
    if limit is None:
        return []
    return sorted(at for at in requests if now - at < limit.window)


def rate_limit_wait(
    requests: Sequence[datetime], now: datetime, limit: RateLimit | None
) -> float | None:
    """Seconds to wait before another token request is allowed; None if allowed now."""
    if limit is None:
        return None
    recent = recent_requests(requests, now, limit)
    if len(recent) < limit.max_requests:
        return None
    oldest_that_must_leave = recent[len(recent) - limit.max_requests]
    return max(0.0, (oldest_that_must_leave + limit.window - now).total_seconds())
