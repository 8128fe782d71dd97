"""The job lifecycle in one place: states, the transitions between them, and the decision
that follows a failed attempt.

Every write of a job's state goes through one named transition (the SQL lives in
`shared/db/repos/job_transitions.py`, each statement writing the state, its history and any
outbox row together). `TRANSITIONS` and `RECORDED_ON_ROW` are the table a test compares with
docs/lifecycle.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.jobs.backoff import next_retry


class JobState(StrEnum):
    QUEUED = "queued"  # waiting for run_at / a worker; moved in by submit, adopt, retry, replay
    RUNNING = "running"  # an attempt owns it; moved in by claim and take_over (workers)
    SUCCEEDED = "succeeded"  # terminal; moved in by succeed (worker)
    FAILED = "failed"  # terminal; permanent error (worker) or invalid foreign payload (adopt)
    CANCELLED = "cancelled"  # terminal; cancel (API) or a running job that stopped for it
    DEAD = "dead"  # terminal; out of attempts (worker or reaper); its message is dead-lettered


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.DEAD})


class Transition(StrEnum):
    SUBMIT = "submit"
    ADOPT = "adopt"
    REJECT = "reject"
    CLAIM = "claim"
    TAKE_OVER = "take_over"
    SUCCEED = "succeed"
    RETRY = "retry"
    FAIL = "fail"
    CANCEL = "cancel"
    KILL = "kill"
    REPLAY = "replay"


Q, R = JobState.QUEUED, JobState.RUNNING
# transition → (states it leaves, state it enters); None is "no row yet".
TRANSITIONS: dict[Transition, tuple[frozenset[JobState | None], JobState]] = {
    Transition.SUBMIT: (frozenset({None}), Q),
    Transition.ADOPT: (frozenset({None}), Q),
    Transition.REJECT: (frozenset({None}), JobState.FAILED),
    Transition.CLAIM: (frozenset({Q}), R),
    Transition.TAKE_OVER: (frozenset({R}), R),
    Transition.SUCCEED: (frozenset({R}), JobState.SUCCEEDED),
    Transition.RETRY: (frozenset({R}), Q),
    Transition.FAIL: (frozenset({R}), JobState.FAILED),
    Transition.CANCEL: (frozenset({Q, R}), JobState.CANCELLED),
    Transition.KILL: (frozenset({R}), JobState.DEAD),
    Transition.REPLAY: (frozenset({JobState.DEAD, JobState.FAILED}), Q),
}


# The happy path's history is the job row itself (created_at; started_at + attempt;
# finished_at), shown with the stored rows by the view `job_history`. Every other transition
# is a `job_events` row, and an attempt that leaves `running` other than by succeeding has its
# claim stored then (issue #11: ~one row write fewer per transition on the hot path).
RECORDED_ON_ROW = frozenset({Transition.SUBMIT, Transition.CLAIM, Transition.SUCCEED})


def transition_for(from_state: JobState | None, to_state: JobState) -> Transition:
    """The named transition between two states (take_over for running → running)."""
    for name, (sources, target) in TRANSITIONS.items():
        if target == to_state and from_state in sources and name is not Transition.ADOPT:
            return name
    raise ValueError(f"no transition from {from_state} to {to_state}")


@dataclass(frozen=True)
class Failure:
    """What went wrong in an attempt: `failed`/`cancelled` are final, `retryable` may retry."""

    state: str  # failed | cancelled | retryable
    code: str
    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class AfterFailure:
    state: JobState
    run_at: datetime | None  # only for QUEUED


def after_failure(
    failure: Failure,
    *,
    attempt: int,
    max_attempts: int,
    cancel_requested: bool,
    now: datetime,
    backoff_base_s: float,
    backoff_max_s: float,
) -> AfterFailure:
    """The one rule for a failed attempt, used by the runner and by the reaper.

    A requested cancel wins over a retry or death (a queued job with cancel_requested could
    never be claimed again); a permanent failure stays `failed`.
    """
    if failure.state == "failed":
        return AfterFailure(JobState.FAILED, None)
    if failure.state == "cancelled" or cancel_requested:
        return AfterFailure(JobState.CANCELLED, None)
    decision = next_retry(
        attempt=attempt,
        max_attempts=max_attempts,
        now=now,
        base_s=backoff_base_s,
        max_s=backoff_max_s,
        retry_after_s=failure.retry_after,
    )
    if decision.retry:
        return AfterFailure(JobState.QUEUED, decision.run_at)
    return AfterFailure(JobState.DEAD, None)
