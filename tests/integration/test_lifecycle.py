"""A job's life on real services: ingress → outbox → RabbitMQ → worker → PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from shared.db.engine import session_scope
from shared.db.models import OutboxMessage
from shared.messaging.names import EVENTS_EXCHANGE, REASON_HEADER
from tests.support.logs import log_events
from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def running(stack: Stack) -> Iterator[Stack]:
    stack.start_scheduler()
    stack.start_worker("default", processes=1, threads=4)
    yield stack


def test_job_succeeds_and_records_every_transition(running: Stack) -> None:
    """The full history from the API and the repository; the happy path stores no
    `job_events` row (the job row's timestamps carry it, issue #11).
    Mutation check: with SUCCEED_SQL writing its history row again, this test failed (the
    stored success came before the row's claim in the history)."""
    job = running.submit(payload={"sleep_ms": 150})
    assert job["state"] == "queued"

    done = running.wait_state(job["id"])

    assert done.state == "succeeded"
    assert done.attempt == 1
    assert done.result == {"slept_ms": 150, "attempt": 1}
    assert done.progress == 1.0
    assert running.events(job["id"]) == [
        (0, None, "queued", None),
        (1, "queued", "running", None),
        (1, "running", "succeeded", None),
    ]
    assert running.stored_events(job["id"]) == []
    seen = running.client.get(f"/v1/jobs/{job['id']}", headers=running.headers())
    events = seen.json()["events"]
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    times = [e["at"] for e in events]
    assert times == sorted(times)


def test_completion_event_is_published_on_the_events_exchange(running: Stack) -> None:
    """Mutation check: with SUCCEED_SQL's outbox insert disabled, no event arrived."""
    channel = running.amqp_channel()
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key="job.diag.noop.*")

    job = running.submit()
    running.wait_state(job["id"])

    def our_event() -> dict[str, object] | None:
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return None
            event = json.loads(body)
            if event["job_id"] == job["id"]:
                assert method.routing_key == "job.diag.noop.succeeded"
                return dict(event)

    event = wait_for(our_event, timeout=10, what="completion event")
    assert event["state"] == "succeeded"  # type: ignore[index]
    # Subscribers tell users apart by (tenant_id, user_id): user ids are unique per tenant.
    assert (event["tenant_id"], event["user_id"]) == (  # type: ignore[index]
        running.job(job["id"]).tenant_id,
        "user-1",
    )
    channel.connection.close()


def test_failures_retry_with_backoff_then_succeed(running: Stack) -> None:
    job = running.submit(payload={"fail_times": 2})
    done = running.wait_state(job["id"])
    assert done.state == "succeeded"
    assert done.attempt == 3
    transitions = running.events(job["id"])
    assert transitions == [
        (0, None, "queued", None),
        (1, "queued", "running", None),
        (1, "running", "queued", "error"),
        (2, "queued", "running", None),
        (2, "running", "queued", "error"),
        (3, "queued", "running", None),
        (3, "running", "succeeded", None),
    ]


def test_last_failed_attempt_is_dead_and_dead_lettered_with_reason(running: Stack) -> None:
    job = running.submit(payload={"fail_times": 10})
    done = running.wait_state(job["id"])
    assert done.state == "dead"
    assert done.attempt == done.max_attempts == 3
    assert done.error_code == "error"
    assert "InjectedFailure" in (done.error_message or "")

    channel = running.amqp_channel()

    def dead_letter() -> dict[str, object] | None:
        method, properties, body = channel.basic_get("conveyor.default.XQ", auto_ack=False)
        while method is not None:
            if json.loads(body).get("job_id") == job["id"]:
                channel.basic_ack(method.delivery_tag)
                return dict(properties.headers)
            method, properties, body = channel.basic_get("conveyor.default.XQ", auto_ack=False)
        return None

    headers = wait_for(dead_letter, timeout=10, what="dead letter")
    assert headers[REASON_HEADER] == "error"  # type: ignore[index]
    channel.connection.close()


def test_permanent_error_fails_once_without_retry(running: Stack) -> None:
    job = running.submit(payload={"fail_permanently": True})
    done = running.wait_state(job["id"])
    assert done.state == "failed"
    assert done.attempt == 1
    assert done.error_code == "injected"


def job_messages(stack: Stack, job_id: str) -> list[OutboxMessage]:
    """The job's own messages in the outbox (completion events are not tied to the job)."""
    with session_scope(stack.sessions) as session:
        stmt = select(OutboxMessage).where(OutboxMessage.job_id == uuid.UUID(job_id))
        rows = list(session.execute(stmt).scalars())
        session.expunge_all()
    return rows


def test_delayed_job_does_not_start_before_run_at(running: Stack) -> None:
    """The relay holds the message until `run_at` and the claim (database clock) never starts
    it earlier. No sleeps: the ordering is read from the rows."""
    run_at = datetime.now(UTC) + timedelta(seconds=2)
    job = running.submit(run_at=run_at.isoformat())
    [message] = job_messages(running, job["id"])
    assert message.publish_after == run_at  # held in the outbox until then
    done = running.wait_state(job["id"])
    assert done.state == "succeeded"
    assert done.started_at is not None and done.started_at >= run_at


def test_cancelled_queued_job_never_starts(running: Stack) -> None:
    """Its delayed message is still published at `run_at` (the relay deletes the outbox row)
    and the worker skips the delivery (its `jobs.delivery_skipped` log line, state
    `cancelled`): the test sees both instead of trusting a sleep."""
    job = running.submit(run_at=(datetime.now(UTC) + timedelta(seconds=1)).isoformat())
    response = running.client.post(f"/v1/jobs/{job['id']}/cancel", headers=running.headers())
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    wait_for(
        lambda: job_messages(running, job["id"]) == [],
        timeout=30,
        what="the delayed message published",
    )
    skipped = wait_for(
        lambda: log_events(running, "worker", event="jobs.delivery_skipped", job_id=job["id"]),
        timeout=30,
        what="the worker skipping the delivery",
    )
    assert [e["state"] for e in skipped] == ["cancelled"]  # type: ignore[attr-defined]
    after = running.job(job["id"])
    assert after.state == "cancelled"
    assert after.attempt == 0
    assert after.started_at is None


def test_running_job_stops_at_its_next_checkpoint(running: Stack) -> None:
    """Mutation check: with `JobContext.checkpoint` ignoring the cancel flag, the job was
    still running when the wait below ran out."""
    job = running.submit(payload={"sleep_ms": 20_000})
    running.wait_state(job["id"], "running")
    response = running.client.post(f"/v1/jobs/{job['id']}/cancel", headers=running.headers())
    assert response.status_code == 200
    assert response.json()["cancel_requested"] is True
    # Generous for a busy machine, and still well short of the 20 s it would take to finish.
    done = running.wait_state(job["id"], timeout=15)
    assert done.state == "cancelled"
    assert done.progress < 0.5  # stopped at a checkpoint, not after the work
    conflict = running.client.post(f"/v1/jobs/{job['id']}/cancel", headers=running.headers())
    assert conflict.status_code == 409
    assert conflict.json()["code"] == "not_cancellable"


def test_idempotency_key_returns_the_existing_job(running: Stack) -> None:
    body = {"kind": "diag.noop", "user_id": "user-1", "payload": {}}
    headers = {**running.headers(), "Idempotency-Key": "order-42"}
    first = running.client.post("/v1/jobs", json=body, headers=headers)
    second = running.client.post("/v1/jobs", json=body, headers=headers)
    other_key = running.client.post(
        "/v1/jobs",
        json=body,
        headers={**running.headers(running.new_api_key()), "Idempotency-Key": "order-42"},
    )
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert other_key.json()["id"] != first.json()["id"]
    running.wait_state(first.json()["id"])


def test_batch_submission_runs_every_job(running: Stack) -> None:
    body = {
        "jobs": [{"kind": "diag.noop", "user_id": f"u{i}", "priority": "bulk"} for i in range(100)]
    }
    response = running.client.post("/v1/jobs:batch", json=body, headers=running.headers())
    assert response.status_code == 202
    ids = [j["id"] for j in response.json()["jobs"]]
    assert len(set(ids)) == 100
    for job_id in ids:
        assert running.wait_state(job_id).state == "succeeded"
