"""An in-memory model of the job lifecycle's rules, written from docs/lifecycle.md alone.

It is the oracle of tests/integration/test_lifecycle_model.py, which drives the model and
PostgreSQL (the statements the workers run) with the same random operations and requires
the same outcome after every step. Two independent statements of one rule set: a change to
the SQL that the docs do not describe shows up as a disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.jobs.lifecycle import TERMINAL, JobState


@dataclass
class ModelJob:
    max_attempts: int
    state: JobState = JobState.QUEUED
    attempt: int = 0
    worker: str | None = None
    stale: bool = False  # its heartbeat is older than the stale threshold
    cancel_requested: bool = False
    history: list[tuple[int, str | None, str]] = field(
        default_factory=lambda: [(0, None, "queued")]
    )

    def _move(self, to: JobState) -> None:
        self.history.append((self.attempt, self.state.value, to.value))
        self.state = to

    def stored(self) -> list[tuple[int, str | None, str]]:
        """The rows `job_events` holds (docs/lifecycle.md, above "Transitions"): every
        transition but submit, claim and succeed, which the job row carries; a claim is
        stored once its attempt leaves `running` other than by succeeding, or is taken over."""
        kept = []
        for i, (attempt, from_state, to_state) in enumerate(self.history):
            if from_state is None and to_state == "queued":
                continue  # submit
            if (from_state, to_state) == ("running", "succeeded"):
                continue
            if (from_state, to_state) == ("queued", "running"):
                later = self.history[i + 1 :]
                left = any(
                    f == "running"
                    and (
                        (a == attempt and t not in ("succeeded", "running"))
                        or (t == "running" and a == attempt + 1)
                    )
                    for a, f, t in later
                )
                if not left:
                    continue
            kept.append((attempt, from_state, to_state))
        return kept


class LifecycleModel:
    def __init__(self) -> None:
        self.jobs: dict[int, ModelJob] = {}

    def submit(self, key: int, max_attempts: int) -> None:
        self.jobs[key] = ModelJob(max_attempts)

    def claim(self, key: int, worker: str) -> int | None:
        """queued → running; running → running only from a dead owner (stale, or itself)."""
        job = self.jobs[key]
        if job.cancel_requested:
            return None
        if job.state is JobState.QUEUED or (
            job.state is JobState.RUNNING and (job.stale or job.worker == worker)
        ):
            job.attempt += 1
            job._move(JobState.RUNNING)
            job.worker, job.stale = worker, False
            return job.attempt
        return None

    def age(self, key: int) -> None:
        self.jobs[key].stale = True

    def succeed(self, key: int, attempt: int) -> bool:
        job = self.jobs[key]
        if job.state is not JobState.RUNNING or job.attempt != attempt:
            return False  # fenced: a stale attempt writes nothing
        job._move(JobState.SUCCEEDED)
        return True

    def fail(self, key: int, attempt: int, *, permanent: bool) -> str:
        job = self.jobs[key]
        if job.state is not JobState.RUNNING or job.attempt != attempt:
            return "lost"
        if permanent:
            to = JobState.FAILED
        elif job.cancel_requested:
            to = JobState.CANCELLED
        elif attempt < job.max_attempts:
            to = JobState.QUEUED
        else:
            to = JobState.DEAD
        job._move(to)
        return to.value

    def cancel(self, key: int) -> bool:
        """False: already terminal (409)."""
        job = self.jobs[key]
        if job.state in TERMINAL:
            return False
        job.cancel_requested = True
        if job.state is JobState.QUEUED:
            job._move(JobState.CANCELLED)
        return True
