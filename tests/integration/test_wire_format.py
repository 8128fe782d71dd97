"""Foreign publishers: raw pika publishes (not our code) onto the documented exchange."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.db.engine import session_scope
from shared.db.repos import limits as limits_repo
from shared.jobs.cancel import cancel_job
from shared.jobs.submit import NewJob, submit_jobs
from shared.messaging.translate import foreign_job_id
from tests.support.services import wait_for
from tests.support.stack import Stack
from tests.support.wire import AmqpUser, ForeignPublisher, amqp_user, dead_letters

pytestmark = pytest.mark.integration

WIRE_CAP = 30  # the worker's cap of unfinished diag.noop jobs per tenant


@pytest.fixture(scope="module")
def publisher(stack: Stack) -> Iterator[AmqpUser]:
    """A registered foreign publisher (its own RabbitMQ user, mapped to a tenant)."""
    with amqp_user(stack) as user:
        yield user


@pytest.fixture(scope="module")
def running(stack: Stack, publisher: AmqpUser) -> Iterator[Stack]:
    stack.start_scheduler()
    publishers = json.dumps({publisher.name: "default"})
    stack.start_worker(
        "default",
        processes=1,
        threads=4,
        CONVEYOR_WIRE_PUBLISHERS=publishers,
        CONVEYOR_QUEUE_CAPS_BY_KIND=json.dumps({"diag.noop": WIRE_CAP}),
    )
    yield stack


@pytest.fixture
def channel(running: Stack, publisher: AmqpUser) -> Iterator[ForeignPublisher]:
    with publisher.publisher() as foreign:
        yield foreign


def test_foreign_message_creates_the_job_and_runs_it(
    running: Stack, channel: ForeignPublisher
) -> None:
    job_id = uuid.uuid4()
    body = {
        "version": 1,
        "job_id": str(job_id),
        "kind": "diag.noop",
        "user_id": "crm-svc",
        "payload": {"sleep_ms": 10},
        "priority": "interactive",
    }
    channel.publish(json.dumps(body).encode())

    done = running.wait_state(job_id)
    assert done.state == "succeeded"
    assert done.source == "wire"
    assert done.user_id == "crm-svc"
    assert running.events(job_id)[0] == (0, None, "queued", "adopted")


def test_republished_foreign_message_runs_once(running: Stack, channel: ForeignPublisher) -> None:
    job_id = uuid.uuid4()
    body = json.dumps(
        {"version": 1, "job_id": str(job_id), "kind": "diag.noop", "user_id": "u"}
    ).encode()
    channel.publish(body)
    running.wait_state(job_id)
    channel.publish(body)  # a publisher retry after the job already finished
    # Once a later job has finished, the republished message has been consumed too.
    assert running.wait_state(running.submit()["id"]).state == "succeeded"
    assert [e[2] for e in running.events(job_id)] == ["queued", "running", "succeeded"]


def test_id_less_message_gets_an_id_derived_from_message_id(
    running: Stack, channel: ForeignPublisher
) -> None:
    message_id = f"order-{uuid.uuid4()}"
    body = json.dumps({"version": 1, "kind": "diag.noop", "user_id": "u"}).encode()
    channel.publish(body, message_id=message_id)
    expected = foreign_job_id("default", channel.user, message_id)
    assert running.wait_state(expected).state == "succeeded"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe not json {MARK}", "not_json"),
        (b'["MARK"]', "not_an_object"),
        (b'{"version": 2, "kind": "diag.noop", "user_id": "MARK"}', "unknown_version"),
        (b'{"version": 1, "kind": "diag.noop", "payload": {"m": "MARK"}}', "invalid_envelope"),
        (b'{"version": 1, "kind": "diag.noop", "user_id": "MARK", "extra": 1}', "invalid_envelope"),
        # Before: accepted as version 1 (True == 1 in Python).
        (b'{"version": true, "kind": "diag.noop", "user_id": "MARK"}', "unknown_version"),
        # Before: a TypeError in adoption; the delivery was acked and the job silently lost.
        (
            b'{"version": 1, "kind": "diag.noop", "user_id": "MARK",'
            b' "run_at": "2030-01-01T10:00:00"}',
            "invalid_envelope",
        ),
    ],
)
def test_malformed_messages_are_dead_lettered_with_a_reason(
    running: Stack, channel: ForeignPublisher, body: bytes, reason: str
) -> None:
    marker = uuid.uuid4().hex
    body = body.replace(b"MARK", marker.encode())
    channel.publish(body)
    found = wait_for(lambda: dead_letters(running, marker), timeout=10, what="dead letter")
    [(headers, raw)] = found  # type: ignore[misc]
    assert headers["x-conveyor-reason"] == reason
    assert raw == body  # the original bytes, untouched, for inspection or replay
    # The worker survived: a good job still runs.
    assert running.wait_state(running.submit()["id"]).state == "succeeded"


def test_unknown_kind_falls_through_to_the_dead_letter_queue(
    running: Stack, channel: ForeignPublisher
) -> None:
    marker = uuid.uuid4().hex
    body = json.dumps({"version": 1, "kind": "no.such_kind", "user_id": marker}).encode()
    channel.publish(body, routing_key="no.such_kind")
    found = wait_for(lambda: dead_letters(running, marker), timeout=10, what="dead letter")
    [(headers, _)] = found  # type: ignore[misc]
    assert headers["x-conveyor-reason"] == "unknown_kind"


def test_invalid_payload_fails_the_job_with_a_reason(
    running: Stack, channel: ForeignPublisher
) -> None:
    job_id = uuid.uuid4()
    body = {
        "version": 1,
        "job_id": str(job_id),
        "kind": "diag.noop",
        "user_id": "u",
        "payload": {"sleep_ms": -5},
    }
    channel.publish(json.dumps(body).encode())
    done = running.wait_state(job_id)
    assert done.state == "failed"
    assert done.error_code == "invalid_payload"
    assert "sleep_ms" in (done.error_message or "")
    assert dead_letters(running, str(job_id))


def test_a_foreign_message_past_the_tenants_cap_is_dead_lettered_not_adopted(
    running: Stack, channel: ForeignPublisher
) -> None:
    """The wire obeys the same per-(tenant, kind) cap as the API: a foreign publisher cannot
    be answered 429, so its message waits in the DLQ (`queue_full`, replayable) and no job is
    created. Broken on purpose once (no cap check in adopt_foreign): the job was adopted."""
    later = datetime.now(UTC) + timedelta(hours=1)
    with session_scope(running.sessions) as session:
        room = WIRE_CAP - limits_repo.unfinished_by_kind(session, "default", ["diag.noop"]).get(
            "diag.noop", 0
        )
        filler = submit_jobs(session, [NewJob("diag.noop", "filler", run_at=later)] * room)
    try:
        job_id = uuid.uuid4()
        body = {"version": 1, "job_id": str(job_id), "kind": "diag.noop", "user_id": "u"}
        channel.publish(json.dumps(body).encode())
        found = wait_for(lambda: dead_letters(running, str(job_id)), what="dead letter")
        [(headers, _)] = found  # type: ignore[misc]
        assert headers["x-conveyor-reason"] == "queue_full"
        assert running.find_job(job_id) is None
    finally:
        with session_scope(running.sessions) as session:
            for outcome in filler:
                cancel_job(session, running.job(outcome.job_id))
    # Room again: the same publisher's next message is adopted and runs.
    again = uuid.uuid4()
    body = {"version": 1, "job_id": str(again), "kind": "diag.noop", "user_id": "u"}
    channel.publish(json.dumps(body).encode())
    assert running.wait_state(again).state == "succeeded"
