"""Model-based test: random claims, take-overs, successes, failures and cancels applied to
PostgreSQL (the statements workers run) and to the in-memory model of docs/lifecycle.md
(tests/support/lifecycle_model.py) must agree on every job's state, attempt and history.

It also checks which rows `job_events` stores: the happy path (submit, claim, succeed) none,
the job row carrying it (view `job_history`).

Mutation checks (done once by hand): letting CLAIM_SQL take over any running job
(`OR true` after the heartbeat condition) fails this test within a few steps; so does
re-enabling the claim's history insert for plain claims (stored rows differ)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import update

from shared.db.engine import session_scope
from shared.db.models import Job
from shared.db.repos import jobs as jobs_repo
from shared.db.repos.job_transitions import (
    Delivery,
    Success,
    claim_in_session,
    succeed_in_session,
)
from shared.db.tenancy import DEFAULT_TENANT
from shared.errors import PermanentError
from shared.jobs.cancel import cancel_job
from shared.jobs.catalog import DIAG_NOOP
from shared.jobs.context import JobContext
from shared.jobs.lifecycle import Failure
from shared.jobs.outcomes import record_failure
from shared.jobs.submit import NewJob, submit_jobs
from shared.messaging.contract import JobEnvelope
from shared.messaging.names import EVENTS_EXCHANGE
from tests.support.lifecycle_model import LifecycleModel
from tests.support.stack import Stack

pytestmark = pytest.mark.integration
STALE_S = 30.0
WORKERS = st.sampled_from(["w1", "w2"])


class Lifecycle(RuleBasedStateMachine):
    stack: ClassVar[Stack]  # set by the test: the fixture is not reachable from here

    def __init__(self) -> None:
        super().__init__()
        self.model = LifecycleModel()
        self.ids: dict[int, uuid.UUID] = {}
        self.attempts: dict[int, list[int]] = {}  # attempts handed out per job

    @rule(max_attempts=st.integers(1, 3))
    def submit(self, max_attempts: int) -> None:
        key = len(self.ids)
        with session_scope(self.stack.sessions) as session:
            [out] = submit_jobs(session, [NewJob("diag.noop", "model")])
            session.execute(
                update(Job).where(Job.id == out.job_id).values(max_attempts=max_attempts)
            )
        self.ids[key] = out.job_id
        self.attempts[key] = []
        self.model.submit(key, max_attempts)

    def _keys(self) -> st.SearchStrategy[int]:
        return st.sampled_from(sorted(self.ids))

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), worker=WORKERS)
    def claim(self, data: st.DataObject, worker: str) -> None:
        key = data.draw(self._keys())
        with session_scope(self.stack.sessions) as session:
            got = claim_in_session(
                session,
                Delivery(self.ids[key], "diag.noop", DEFAULT_TENANT),
                worker=worker,
                stale_s=STALE_S,
            )
        expected = self.model.claim(key, worker)
        assert (got.attempt if got else None) == expected
        if got is not None:
            self.attempts[key].append(got.attempt)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def heartbeat_goes_stale(self, data: st.DataObject) -> None:
        key = data.draw(self._keys())
        with session_scope(self.stack.sessions) as session:
            session.execute(
                update(Job)
                .where(Job.id == self.ids[key])
                .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=STALE_S + 5))
            )
        self.model.age(key)

    @precondition(lambda self: any(self.attempts.values()))
    @rule(data=st.data())
    def succeed(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from([k for k, a in self.attempts.items() if a]))
        attempt = data.draw(st.sampled_from(self.attempts[key]))
        success = Success(self.ids[key], attempt, "{}", "job.diag.noop.succeeded", b"{}")
        with session_scope(self.stack.sessions) as session:
            done = succeed_in_session(session, success, exchange=EVENTS_EXCHANGE)
        assert done == self.model.succeed(key, attempt)

    @precondition(lambda self: any(self.attempts.values()))
    @rule(data=st.data(), permanent=st.booleans())
    def fail(self, data: st.DataObject, permanent: bool) -> None:
        key = data.draw(st.sampled_from([k for k, a in self.attempts.items() if a]))
        attempt = data.draw(st.sampled_from(self.attempts[key]))
        job_id = self.ids[key]
        failure = (
            Failure("failed", "bad_input", "no")
            if permanent
            else Failure("retryable", "error", "boom")
        )
        job = self.stack.job(job_id)
        ctx = JobContext(
            job_id, "diag.noop", "model", attempt, job.max_attempts, self.stack.sessions
        )
        envelope = JobEnvelope(version=1, kind="diag.noop", user_id="model", job_id=job_id)
        got = record_failure(
            self.stack.sessions,
            DIAG_NOOP,
            ctx,
            failure,
            envelope,
            queue="conveyor.default",
            now=datetime.now(UTC),
        )
        assert got == self.model.fail(key, attempt, permanent=permanent)
        if got == "queued":  # the backoff has passed: due again
            with session_scope(self.stack.sessions) as session:
                session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(run_at=datetime.now(UTC) - timedelta(seconds=1))
                )

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        key = data.draw(self._keys())
        try:
            with session_scope(self.stack.sessions) as session:
                job = jobs_repo.get(session, self.ids[key])
                assert job is not None
                cancel_job(session, job)
            accepted = True
        except PermanentError:
            accepted = False
        assert accepted == self.model.cancel(key)

    @invariant()
    def same_state_attempt_and_history(self) -> None:
        for key, job_id in self.ids.items():
            job = self.stack.job(job_id)
            modelled = self.model.jobs[key]
            assert (job.state, job.attempt) == (modelled.state.value, modelled.attempt)
            history = [(a, f, t) for a, f, t, _ in self.stack.events(job_id)]
            assert history == modelled.history
            stored = [(a, f, t) for a, f, t, _ in self.stack.stored_events(job_id)]
            assert stored == modelled.stored()


def test_postgresql_obeys_the_documented_lifecycle(stack: Stack) -> None:
    Lifecycle.stack = stack
    run_state_machine_as_test(
        Lifecycle,
        settings=settings(
            max_examples=20,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
