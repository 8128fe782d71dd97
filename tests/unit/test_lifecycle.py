"""The lifecycle rules without services: the transition table, the failure decision,
exception classification and the in-process ownership of running jobs."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dramatiq.middleware.time_limit import TimeLimitExceeded

from shared.errors import JobCancelled, PermanentError, TransientError
from shared.jobs.lifecycle import (
    RECORDED_ON_ROW,
    TRANSITIONS,
    Failure,
    JobState,
    Transition,
    after_failure,
    transition_for,
)
from shared.jobs.outcomes import classify
from shared.jobs.runner import RunningJobs

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.md"


def _documented_transitions() -> dict[str, tuple[frozenset[str], str]]:
    """The table under '## Transitions' in docs/lifecycle.md: | name | from | to | ..."""
    section = DOCS.read_text().split("## Transitions", 1)[1].split("\n## ", 1)[0]
    table: dict[str, tuple[frozenset[str], str]] = {}
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("transition", "") or set(cells[0]) <= {"-"}:
            continue
        sources = frozenset(s.strip().strip("`") for s in re.split(r",|/", cells[1]))
        table[cells[0]] = (sources, cells[2])
    return table


def _documented_on_row() -> set[str]:
    """Transitions whose 'recorded as' cell starts with 'row:' (history on the job row)."""
    section = DOCS.read_text().split("## Transitions", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and cells[5].startswith("row:"):
            names.add(cells[0])
    return names


def test_the_documented_transition_table_is_the_code() -> None:
    code = {
        t.value: (frozenset("(none)" if s is None else s.value for s in sources), target.value)
        for t, (sources, target) in TRANSITIONS.items()
    }
    assert _documented_transitions() == code
    assert _documented_on_row() == {t.value for t in RECORDED_ON_ROW}


def test_every_state_is_reachable_and_terminal_states_only_leave_by_replay() -> None:
    targets = {target for _, target in TRANSITIONS.values()}
    assert targets == set(JobState)
    for name, (sources, _) in TRANSITIONS.items():
        if sources & {JobState.SUCCEEDED, JobState.CANCELLED}:
            pytest.fail(f"{name} leaves a final state")
        if sources & {JobState.DEAD, JobState.FAILED}:
            assert name is Transition.REPLAY


def test_transition_names_between_states() -> None:
    assert transition_for(JobState.QUEUED, JobState.RUNNING) is Transition.CLAIM
    assert transition_for(JobState.RUNNING, JobState.RUNNING) is Transition.TAKE_OVER
    assert transition_for(JobState.RUNNING, JobState.QUEUED) is Transition.RETRY
    assert transition_for(JobState.DEAD, JobState.QUEUED) is Transition.REPLAY
    with pytest.raises(ValueError):
        transition_for(JobState.SUCCEEDED, JobState.RUNNING)


def decide(failure: Failure, *, attempt: int = 1, max_attempts: int = 3, cancel: bool = False):  # type: ignore[no-untyped-def]
    return after_failure(
        failure,
        attempt=attempt,
        max_attempts=max_attempts,
        cancel_requested=cancel,
        now=NOW,
        backoff_base_s=2,
        backoff_max_s=60,
    )


RETRYABLE = Failure("retryable", "error", "boom")


def test_a_retryable_failure_with_attempts_left_is_queued_after_a_backoff() -> None:
    outcome = decide(RETRYABLE, attempt=2)
    assert outcome.state is JobState.QUEUED
    assert outcome.run_at is not None
    # attempt 2: ceiling 2 * 2 = 4 s; equal jitter keeps at least half of it.
    assert NOW + timedelta(seconds=2) <= outcome.run_at <= NOW + timedelta(seconds=4)


def test_the_last_attempt_dies() -> None:
    assert decide(RETRYABLE, attempt=3, max_attempts=3).state is JobState.DEAD


def test_a_longer_retry_after_wins() -> None:
    outcome = decide(Failure("retryable", "rate_limited", "429", retry_after=120))
    assert outcome.run_at == NOW + timedelta(seconds=120)


def test_permanent_failures_never_retry_even_with_attempts_left() -> None:
    assert decide(Failure("failed", "bad_input", "no")).state is JobState.FAILED


@pytest.mark.parametrize("attempt", [1, 3])
def test_a_requested_cancel_wins_over_retry_and_death(attempt: int) -> None:
    """A queued job with cancel_requested could never be claimed again."""
    assert decide(RETRYABLE, attempt=attempt, cancel=True).state is JobState.CANCELLED


def test_a_checkpoint_cancel_is_cancelled() -> None:
    assert decide(Failure("cancelled", "cancelled", "at checkpoint")).state is JobState.CANCELLED


@pytest.mark.parametrize(
    ("exc", "state", "code"),
    [
        (JobCancelled("stop", job_id=uuid.uuid4()), "cancelled", "cancelled"),
        (PermanentError("bad", code="bad_input"), "failed", "bad_input"),
        (TimeLimitExceeded(), "retryable", "time_limit"),
        (TransientError("later", retry_after=5), "retryable", "transient"),
        (ValueError("bug"), "retryable", "error"),
    ],
)
def test_classify_maps_exceptions_to_outcomes(exc: BaseException, state: str, code: str) -> None:
    failure = classify(exc)
    assert failure is not None
    assert (failure.state, failure.code) == (state, code)


def test_classify_leaves_process_interrupts_alone() -> None:
    assert classify(KeyboardInterrupt()) is None
    assert classify(SystemExit(0)) is None


def test_a_job_reserved_in_this_process_cannot_be_reserved_again() -> None:
    """The in-process half of 'at most one attempt executes at a time'."""
    running = RunningJobs()
    job = uuid.uuid4()
    assert running.reserve(job)
    assert not running.reserve(job)  # a duplicate delivery to this process is skipped
    assert running.snapshot() == []  # not claimed yet: nothing to heartbeat
    running.add(job, 1)
    assert running.snapshot() == [(job, 1)]
    running.release(job)
    assert running.reserve(job)


def test_infrastructure_error_text_never_reaches_the_job_row() -> None:
    """Issue 12: S3 and SQL error text (bucket names, request ids, statements, parameters)
    stays in the log; the job's error is a stable code and a short message. Checked by
    putting `{exc}` back into the message: the assertions on the secrets fail."""
    from minio.error import S3Error
    from sqlalchemy.exc import DataError

    s3 = S3Error(
        None,  # type: ignore[arg-type]
        "NoSuchBucket",
        "The specified bucket does not exist",
        "secret-bucket-name/key",
        "REQ-ID-123",
        "HOST-ID-456",
        bucket_name="secret-bucket-name",
    )
    sql = DataError("SELECT secret_column FROM t WHERE x = %(x)s", {"x": "p4ss"}, ValueError())
    cases = [(s3, "storage_error", "NoSuchBucket"), (sql, "database_error", "SQLSTATE")]
    for exc, code, shown in cases:
        failure = classify(exc)
        assert failure is not None
        assert (failure.state, failure.code) == ("retryable", code)
        assert shown in failure.message
        for secret in ("secret-bucket-name", "REQ-ID", "HOST-ID", "secret_column", "p4ss"):
            assert secret not in failure.message, (secret, failure.message)


def test_completion_events_follow_the_catalogue_unless_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Default: every terminal state of every kind (the public contract); the setting
    overrides per kind, "*" for the others. Mutation check: ignoring "*" failed this test."""
    from shared.config import get_settings
    from shared.jobs.messages import publishes_completion

    get_settings.cache_clear()
    try:
        for state in ("succeeded", "failed", "cancelled", "dead"):
            assert publishes_completion("diag.noop", state)
        assert publishes_completion("no.such.kind", "succeeded")
        monkeypatch.setenv(
            "CONVEYOR_COMPLETION_EVENTS",
            '{"*": ["failed", "dead"], "export.create": ["succeeded", "failed"]}',
        )
        get_settings.cache_clear()
        assert not publishes_completion("diag.noop", "succeeded")
        assert publishes_completion("diag.noop", "dead")
        assert publishes_completion("export.create", "succeeded")
        assert not publishes_completion("export.create", "dead")
    finally:
        get_settings.cache_clear()
