"""Retry decisions as a pure function: what happens after attempt N failed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    run_at: datetime | None = None


def next_retry(
    *,
    attempt: int,
    max_attempts: int,
    now: datetime,
    base_s: float,
    max_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Exponential backoff with equal jitter (uniform between half the ceiling and the
    ceiling, so retries never bunch at zero); a server's Retry-After wins when longer."""
    if attempt >= max_attempts:
        return RetryDecision(retry=False)
    ceiling = min(max_s, base_s * (2 ** (attempt - 1)))
    delay = (rng or random).uniform(ceiling / 2, ceiling)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return RetryDecision(retry=True, run_at=now + timedelta(seconds=delay))
