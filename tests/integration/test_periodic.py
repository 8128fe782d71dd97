"""Periodic jobs: the canary runs on schedule, once per period even with two schedulers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from shared.db.engine import session_scope
from shared.db.models import Job, PeriodicRun
from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def canaries(stack: Stack) -> list[Job]:
    with session_scope(stack.sessions) as session:
        stmt = select(Job).where(Job.user_id == "conveyor-canary").order_by(Job.created_at)
        return list(session.execute(stmt).scalars())


def test_canary_runs_every_period_and_never_twice(stack: Stack) -> None:
    """At most one canary per 2 s period, with two schedulers competing.

    No wall-clock thresholds: the bound follows from the order of events. The n-th canary is
    staged at Python time `at_n >= at_1 + 2 (n - 1)` (the `is_due` rule), `periodic_runs`
    keeps `at_n`, and the first job's `created_at` (its transaction's start) precedes `at_1`.
    So `last_run_at - created_at_1 >= 2 (n - 1)` on any machine, however busy; a period
    submitted twice breaks it. Mutation check: with `is_due` at half the period, it did."""
    stack.start_scheduler(CONVEYOR_CANARY_INTERVAL_S="2")
    stack.start_scheduler(CONVEYOR_CANARY_INTERVAL_S="2")
    stack.start_worker("default", processes=1, threads=2)

    wait_for(lambda: len(canaries(stack)) >= 3, timeout=60, what="three canaries")
    jobs = canaries(stack)  # before reading last_run_at: a later canary only raises it
    with session_scope(stack.sessions) as session:
        last_run_at = session.execute(
            select(PeriodicRun.last_run_at).where(PeriodicRun.name == "canary")
        ).scalar_one()
    span = (last_run_at - jobs[0].created_at).total_seconds()
    assert span >= 2 * (len(jobs) - 1), (span, len(jobs))
    assert jobs[0].kind == "diag.noop"
    assert stack.wait_state(jobs[0].id).state == "succeeded"
