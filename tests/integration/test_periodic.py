"""Periodic jobs: the canary runs on schedule, once per period even with two schedulers."""

from __future__ import annotations

import itertools
import time

import pytest
from sqlalchemy import select

from shared.db.engine import session_scope
from shared.db.models import Job
from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def canaries(stack: Stack) -> list[Job]:
    with session_scope(stack.sessions) as session:
        stmt = select(Job).where(Job.user_id == "conveyor-canary").order_by(Job.created_at)
        return list(session.execute(stmt).scalars())


def test_canary_runs_every_period_and_never_twice(stack: Stack) -> None:
    started = time.monotonic()
    stack.start_scheduler(CONVEYOR_CANARY_INTERVAL_S="2")
    stack.start_scheduler(CONVEYOR_CANARY_INTERVAL_S="2")
    stack.start_worker("default", processes=1, threads=2)

    wait_for(lambda: len(canaries(stack)) >= 3, timeout=30, what="three canaries")
    elapsed = time.monotonic() - started
    jobs = canaries(stack)
    assert len(jobs) <= elapsed / 2 + 1  # at most one per period, whichever scheduler leads
    gaps = [(b.created_at - a.created_at).total_seconds() for a, b in itertools.pairwise(jobs)]
    assert all(gap >= 1.9 for gap in gaps), gaps
    assert jobs[0].kind == "diag.noop"
    assert stack.wait_state(jobs[0].id).state == "succeeded"
