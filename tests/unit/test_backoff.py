"""Retry decisions: exponential backoff with jitter, capped, Retry-After respected."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from shared.jobs.backoff import next_retry

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@given(
    attempt=st.integers(1, 50),
    max_attempts=st.integers(1, 50),
    base=st.floats(0.01, 10),
    cap=st.floats(0.01, 3600),
    seed=st.integers(0, 10**6),
    retry_after=st.none() | st.floats(0, 10_000),
)
def test_backoff_invariants(
    attempt: int, max_attempts: int, base: float, cap: float, seed: int, retry_after: float | None
) -> None:
    decision = next_retry(
        attempt=attempt,
        max_attempts=max_attempts,
        now=NOW,
        base_s=base,
        max_s=cap,
        retry_after_s=retry_after,
        rng=random.Random(seed),
    )
    if attempt >= max_attempts:
        assert not decision.retry and decision.run_at is None
        return
    assert decision.retry and decision.run_at is not None
    delay = (decision.run_at - NOW).total_seconds()
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert delay >= ceiling / 2 - 1e-6
    assert delay <= max(ceiling, retry_after or 0) + 1e-6
    if retry_after is not None:
        assert delay >= retry_after - 1e-6


def test_delays_grow_until_the_cap() -> None:
    rng = random.Random(1)
    ceilings = [
        (next_retry(attempt=a, max_attempts=99, now=NOW, base_s=1, max_s=30, rng=rng).run_at - NOW)  # type: ignore[operator]
        .total_seconds()
        for a in range(1, 10)
    ]
    assert ceilings[0] <= 1 and ceilings[4] >= 8 and max(ceilings) <= 30


def test_periodic_schedule_is_due_after_its_interval() -> None:
    from datetime import timedelta

    from shared.jobs.periodic import EPOCH, builtin_schedules, is_due

    every = timedelta(seconds=60)
    assert is_due(EPOCH, every, NOW)
    assert not is_due(NOW - timedelta(seconds=59), every, NOW)
    assert is_due(NOW - timedelta(seconds=60), every, NOW)
    assert builtin_schedules(canary_interval_s=0) == []
    [canary] = builtin_schedules(canary_interval_s=30)
    assert canary.every == timedelta(seconds=30) and canary.kind == "diag.noop"
