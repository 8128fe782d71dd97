"""HTTP clients that behave as the API asks: retry with the same Idempotency-Key until a 2xx.

Connection errors and 5xx are retried; any 2xx is an acceptance (a promise the job exists),
recorded with the id it returned. A 4xx is a bug in the suite or the API: recorded and not
retried.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRY_PAUSE_S = 0.2


@dataclass(frozen=True)
class Submission:
    key: str
    body: dict[str, Any]


@dataclass
class Accepted:
    """What the clients were promised, shared by the client threads."""

    ids: dict[str, str] = field(default_factory=dict)  # idempotency key -> job id
    rejected: list[tuple[str, int, str]] = field(default_factory=list)
    retries: int = 0
    replayed: int = 0  # 200 + Idempotent-Replayed: an earlier try had been stored
    lock: threading.Lock = field(default_factory=threading.Lock)

    def job_ids(self) -> list[str]:
        with self.lock:
            return list(self.ids.values())


def job_mix(count: int, seed: int) -> list[Submission]:
    """No-ops, short sleeps, injected failures, object-store round-trips, permanent failures."""
    rng = random.Random(seed)
    submissions = []
    for i in range(count):
        roll = rng.random()
        payload: dict[str, Any] = {}
        if roll < 0.15:
            payload["sleep_ms"] = rng.choice((100, 200, 300))
        elif roll < 0.30:
            payload["fail_times"] = 1
        elif roll < 0.45:
            payload["store_roundtrip"] = True
        elif roll < 0.47:
            payload["fail_permanently"] = True
        body = {"kind": "diag.noop", "user_id": f"chaos-{i % 50}", "payload": payload}
        submissions.append(Submission(f"chaos-{seed}-{i}", body))
    return submissions


def submit_until_accepted(
    client: httpx.Client, submission: Submission, accepted: Accepted, stop: threading.Event
) -> str | None:
    headers = {"Idempotency-Key": submission.key}
    while not stop.is_set():
        try:
            response = client.post("/v1/jobs", json=submission.body, headers=headers)
        except httpx.HTTPError:
            response = None
        if response is not None and response.is_success:
            job_id = str(response.json()["id"])
            with accepted.lock:
                accepted.ids[submission.key] = job_id
                accepted.replayed += response.status_code == 200
            return job_id
        if response is not None and response.status_code < 500:
            with accepted.lock:
                accepted.rejected.append((submission.key, response.status_code, response.text))
            return None
        with accepted.lock:
            accepted.retries += 1
        time.sleep(RETRY_PAUSE_S)
    return None


def run_clients(
    base_url: str,
    token: str,
    work: Iterator[Submission],
    accepted: Accepted,
    *,
    threads: int,
    stop: threading.Event,
) -> list[threading.Thread]:
    """Start `threads` clients draining `work` (shared, thread-safe through a lock)."""
    lock = threading.Lock()

    def next_submission() -> Submission | None:
        with lock:
            return next(work, None)

    def client_loop() -> None:
        with httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client:
            while (submission := next_submission()) is not None and not stop.is_set():
                submit_until_accepted(client, submission, accepted, stop)

    started = [threading.Thread(target=client_loop, daemon=True) for _ in range(threads)]
    for thread in started:
        thread.start()
    return started


def probe_submission() -> Submission:
    """A job submitted after a fault to observe recovery: high priority, touches S3 too."""
    return Submission(
        f"probe-{uuid.uuid4().hex}",
        {
            "kind": "diag.noop",
            "user_id": "chaos-probe",
            "priority": "interactive",
            "payload": {"store_roundtrip": True},
        },
    )
