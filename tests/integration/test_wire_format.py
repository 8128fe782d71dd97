"""Foreign publishers: raw pika publishes (not our code) onto the documented exchange."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from shared.messaging.translate import FOREIGN_ID_NAMESPACE
from tests.support.services import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

EXCHANGE = "conveyor.jobs"  # spelled out: this test plays a publisher that has only the docs


@pytest.fixture(scope="module")
def running(stack: Stack) -> Iterator[Stack]:
    stack.start_scheduler()
    stack.start_worker("default", processes=1, threads=4)
    yield stack


@pytest.fixture
def channel(running: Stack) -> Iterator[BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(running.amqp_url))
    channel = connection.channel()
    channel.confirm_delivery()
    yield channel
    connection.close()


def publish(
    channel: BlockingChannel, body: bytes, routing_key: str = "diag.noop", **properties: Any
) -> None:
    channel.basic_publish(
        EXCHANGE, routing_key, body, pika.BasicProperties(delivery_mode=2, **properties)
    )


def dead_letters(running: Stack, marker: str) -> list[tuple[dict[str, Any], bytes]]:
    """Messages in the default pool's dead-letter queue whose body contains `marker`."""
    channel = running.amqp_channel()
    found = []
    while True:
        method, properties, body = channel.basic_get("conveyor.default.XQ", auto_ack=False)
        if method is None:
            break
        if marker.encode() in body:
            found.append((dict(properties.headers or {}), body))
            channel.basic_ack(method.delivery_tag)
    channel.connection.close()
    return found


def test_foreign_message_creates_the_job_and_runs_it(
    running: Stack, channel: BlockingChannel
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
    publish(channel, json.dumps(body).encode())

    done = running.wait_state(job_id)
    assert done.state == "succeeded"
    assert done.source == "wire"
    assert done.user_id == "crm-svc"
    assert running.events(job_id)[0] == (0, None, "queued", "adopted")


def test_republished_foreign_message_runs_once(running: Stack, channel: BlockingChannel) -> None:
    job_id = uuid.uuid4()
    body = json.dumps(
        {"version": 1, "job_id": str(job_id), "kind": "diag.noop", "user_id": "u"}
    ).encode()
    publish(channel, body)
    running.wait_state(job_id)
    publish(channel, body)  # a publisher retry after the job already finished
    # Once a later job has finished, the republished message has been consumed too.
    assert running.wait_state(running.submit()["id"]).state == "succeeded"
    assert [e[2] for e in running.events(job_id)] == ["queued", "running", "succeeded"]


def test_id_less_message_gets_an_id_derived_from_message_id(
    running: Stack, channel: BlockingChannel
) -> None:
    message_id = f"order-{uuid.uuid4()}"
    body = json.dumps({"version": 1, "kind": "diag.noop", "user_id": "u"}).encode()
    publish(channel, body, message_id=message_id)
    expected = uuid.uuid5(FOREIGN_ID_NAMESPACE, message_id)
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
    running: Stack, channel: BlockingChannel, body: bytes, reason: str
) -> None:
    marker = uuid.uuid4().hex
    body = body.replace(b"MARK", marker.encode())
    publish(channel, body)
    found = wait_for(lambda: dead_letters(running, marker), timeout=10, what="dead letter")
    [(headers, raw)] = found  # type: ignore[misc]
    assert headers["x-conveyor-reason"] == reason
    assert raw == body  # the original bytes, untouched, for inspection or replay
    # The worker survived: a good job still runs.
    assert running.wait_state(running.submit()["id"]).state == "succeeded"


def test_unknown_kind_falls_through_to_the_dead_letter_queue(
    running: Stack, channel: BlockingChannel
) -> None:
    marker = uuid.uuid4().hex
    body = json.dumps({"version": 1, "kind": "no.such_kind", "user_id": marker}).encode()
    publish(channel, body, routing_key="no.such_kind")
    found = wait_for(lambda: dead_letters(running, marker), timeout=10, what="dead letter")
    [(headers, _)] = found  # type: ignore[misc]
    assert headers["x-conveyor-reason"] == "unknown_kind"


def test_invalid_payload_fails_the_job_with_a_reason(
    running: Stack, channel: BlockingChannel
) -> None:
    job_id = uuid.uuid4()
    body = {
        "version": 1,
        "job_id": str(job_id),
        "kind": "diag.noop",
        "user_id": "u",
        "payload": {"sleep_ms": -5},
    }
    publish(channel, json.dumps(body).encode())
    done = running.wait_state(job_id)
    assert done.state == "failed"
    assert done.error_code == "invalid_payload"
    assert "sleep_ms" in (done.error_message or "")
    assert dead_letters(running, str(job_id))
