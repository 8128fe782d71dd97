"""An authenticated wire (issue #12): who may publish what, proven with real RabbitMQ users.

Conveyor's own processes run as a service user with the permissions that
deploy/rabbitmq/definitions.json gives `conveyor`; foreign publishers get those of its
example `crm-svc`. The issue's reproduction: a foreign publisher sent `file.delete` for
another user's file, and the file was deleted.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker
from sqlalchemy import text

from shared.crypto import KeyRing, sign
from shared.embedded import EmbeddedS3
from shared.storage.buckets import Bucket, file_key
from tests.support import media
from tests.support.services import wait_for
from tests.support.stack import Stack
from tests.support.uploads import exists, file_row, upload
from tests.support.wire import SERVICE_USER, AmqpUser, amqp_user, dead_letters, publish

pytestmark = pytest.mark.integration

MEDIA_DLQ = "conveyor.media.XQ"
SIGNING_KEYS = f"crmA:{base64.b64encode(b'A' * 32).decode()}"


@dataclass(frozen=True)
class World:
    stack: Stack
    service: AmqpUser
    publisher: AmqpUser  # registered: may send public kinds
    stranger: AmqpUser  # may write the exchange, but nobody registered it
    shared: AmqpUser  # credentials shared by several services: must sign each message
    rival: AmqpUser  # registered for another tenant


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3) -> Iterator[World]:
    stack = Stack.create(tmp_path_factory.mktemp("logs"), s3=s3_server)
    with (
        amqp_user(stack, like=SERVICE_USER) as service,
        amqp_user(stack) as publisher,
        amqp_user(stack) as stranger,
        amqp_user(stack) as shared,
        amqp_user(stack) as rival,
    ):
        with stack.engine.begin() as conn:
            conn.execute(text("INSERT INTO tenants (id, name) VALUES ('rival', 'Rival')"))
        env = {
            "CONVEYOR_BROKER_URL": service.url,  # not guest: the deploy file's permissions
            "CONVEYOR_WIRE_PUBLISHERS": json.dumps(
                {publisher.name: "default", rival.name: "rival"}
            ),
            "CONVEYOR_WIRE_SHARED_PUBLISHERS": json.dumps([shared.name]),
            "CONVEYOR_WIRE_SIGNING_KEYS": SIGNING_KEYS,
            "CONVEYOR_WIRE_SIGNERS": json.dumps({"crmA": "default"}),
        }
        stack.start_scheduler(**env)
        stack.start_worker("media", processes=1, threads=2, **env)
        stack.start_worker("default", processes=1, threads=2, **env)
        yield World(stack, service, publisher, stranger, shared, rival)
        stack.close()


def victims_file(world: World) -> tuple[str, str]:
    """(user, file id) of a stored file, uploaded through the API and processed."""
    who = f"victim-{uuid.uuid4().hex[:8]}"
    sent = upload(world.stack, who, "p.png", "image/png", media.png_with_alpha(64))
    assert world.stack.wait_state(sent.job_id, timeout=60).state == "succeeded"
    return who, sent.upload_id


def file_intact(world: World, file_id: str) -> bool:
    row = file_row(world.stack, file_id)
    return (
        row is not None
        and row.deleted_at is None
        and exists(world.stack, Bucket.IMAGES, file_key(file_id))
    )


def delete_message(user_id: str, file_id: str) -> tuple[uuid.UUID, bytes]:
    job_id = uuid.uuid4()
    body = {
        "version": 1,
        "job_id": str(job_id),
        "kind": "file.delete",
        "user_id": user_id,
        "payload": {"file_id": file_id},
    }
    return job_id, json.dumps(body).encode()


def refused(world: World, job_id: uuid.UUID, queue: str = MEDIA_DLQ) -> str:
    """The dead-letter reason of the message with `job_id`; it never became a job."""
    found = wait_for(lambda: dead_letters(world.stack, str(job_id), queue), what="dead letter")
    [(headers, _)] = found  # type: ignore[misc]
    assert world.stack.find_job(job_id) is None
    return str(headers["x-conveyor-reason"])


def test_foreign_publisher_cannot_delete_another_users_file(world: World) -> None:
    """The issue's reproduction. Broken on purpose once (check_kind skipped): the delete was
    adopted and ran, and this failed."""
    victim, file_id = victims_file(world)
    job_id, body = delete_message(victim, file_id)
    with world.publisher.publisher() as foreign:
        foreign.publish(body, routing_key="file.delete")
    assert refused(world, job_id) == "forbidden_kind"
    assert file_intact(world, file_id)


@pytest.mark.parametrize("who", ["unregistered", "no_user_id"])
def test_unauthenticated_publishers_are_dead_lettered(world: World, who: str) -> None:
    victim, file_id = victims_file(world)
    job_id, body = delete_message(victim, file_id)
    if who == "unregistered":
        with world.stranger.publisher() as stranger:
            stranger.publish(body, routing_key="file.delete")
    else:
        channel = world.publisher.channel()
        publish(channel, body, routing_key="file.delete")  # no user_id property
        channel.connection.close()
    assert refused(world, job_id) == "unauthenticated_publisher"
    # Public kinds too: not even a diag.noop from an unknown publisher runs.
    noop_id = uuid.uuid4()
    noop = {"version": 1, "job_id": str(noop_id), "kind": "diag.noop", "user_id": victim}
    with world.stranger.publisher() as stranger:
        stranger.publish(json.dumps(noop).encode())
    assert refused(world, noop_id, "conveyor.default.XQ") == "unauthenticated_publisher"
    assert file_intact(world, file_id)


def test_a_forged_user_id_is_refused_by_rabbitmq(world: World) -> None:
    """What makes `user_id` trustworthy: RabbitMQ closes the channel, nothing is routed."""
    victim, file_id = victims_file(world)
    job_id, body = delete_message(victim, file_id)
    with world.publisher.publisher() as foreign, pytest.raises(ChannelClosedByBroker) as caught:
        foreign.publish(body, routing_key="file.delete", user_id=world.service.name)
    assert caught.value.reply_code == 406  # PRECONDITION_FAILED: user_id mismatch
    # A later message from the same publisher is handled: the forged one was never routed.
    marker_id, marker = delete_message(victim, file_id)
    with world.publisher.publisher() as foreign:
        foreign.publish(marker, routing_key="file.delete")
    assert refused(world, marker_id) == "forbidden_kind"
    assert world.stack.find_job(job_id) is None
    assert file_intact(world, file_id)


def test_foreign_publishers_write_only_the_jobs_exchange(world: World) -> None:
    """The deploy definitions' permissions, on a real broker: no events, no queues."""
    attempts = [
        lambda ch: ch.basic_publish(
            "conveyor.events", "job.x.succeeded", b"{}", pika.BasicProperties()
        ),
        lambda ch: ch.basic_publish("", "conveyor.media", b"{}", pika.BasicProperties()),
        lambda ch: ch.basic_get("conveyor.media", auto_ack=True),
        lambda ch: ch.queue_declare("mine", exclusive=True),
    ]
    for attempt in attempts:
        channel = world.publisher.channel()
        with pytest.raises(ChannelClosedByBroker) as caught:
            attempt(channel)
        assert caught.value.reply_code == 403  # ACCESS_REFUSED
        channel.connection.close()


def test_service_job_for_a_user_who_does_not_own_the_file_touches_nothing(
    world: World,
) -> None:
    """A service-published job (the Python publish API) naming the wrong user: `not_found`,
    the file intact. Broken on purpose once (owner check removed from deletion.py): the file
    was deleted and this failed."""
    victim, file_id = victims_file(world)
    mallory = f"mallory-{uuid.uuid4().hex[:8]}"
    job = world.stack.submit_internal("file.delete", {"file_id": file_id}, user_id=mallory)
    done = world.stack.wait_state(job["id"], timeout=60)
    assert (done.state, done.error_code) == ("failed", "not_found")
    assert file_intact(world, file_id)
    # The owner's own delete still works.
    own = world.stack.submit_internal("file.delete", {"file_id": file_id}, user_id=victim)
    assert world.stack.wait_state(own["id"], timeout=60).state == "succeeded"
    assert not file_intact(world, file_id)


def test_shared_credentials_need_a_valid_signature(world: World) -> None:
    """Several services behind one RabbitMQ user: the HMAC key id tells them apart."""
    ring, wrong = (
        KeyRing.parse(SIGNING_KEYS),
        KeyRing.parse(f"crmA:{base64.b64encode(b'B' * 32).decode()}"),
    )
    ids = [uuid.uuid4() for _ in range(3)]
    bodies = [
        json.dumps({"version": 1, "job_id": str(i), "kind": "diag.noop", "user_id": "u"}).encode()
        for i in ids
    ]
    with world.shared.publisher() as shared:
        shared.publish(bodies[0], headers={"x-conveyor-signature": sign(ring, bodies[0])})
        shared.publish(bodies[1])  # unsigned
        shared.publish(bodies[2], headers={"x-conveyor-signature": sign(wrong, bodies[2])})
    assert world.stack.wait_state(ids[0], timeout=60).state == "succeeded"
    for job_id in ids[1:]:
        assert refused(world, job_id, "conveyor.default.XQ") == "bad_signature"


def test_a_job_id_of_another_tenant_or_kind_is_dead_lettered_and_the_job_untouched(
    world: World,
) -> None:
    """A message whose job id names an existing job of another tenant (or another kind) may
    neither run it nor be dropped: `job_mismatch` in the DLQ, the job as it was. Broken on
    purpose once (the claim not filtered by tenant and kind, the mismatch not checked): the
    messages were acknowledged as "skipped" and nothing reached the DLQ."""
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    victim = world.stack.submit("diag.noop", user_id="victim", run_at=later)
    before = world.stack.job(victim["id"])
    forged = [  # (publisher, kind, payload, dead-letter queue)
        (world.rival, "diag.noop", {}, "conveyor.default.XQ"),  # another tenant's job
        (world.service, "file.delete", {"file_id": str(uuid.uuid4())}, MEDIA_DLQ),  # kind
    ]
    for who, kind, payload, queue in forged:
        body = {"version": 1, "job_id": victim["id"], "kind": kind, "user_id": "victim"}
        with who.publisher() as foreign:
            foreign.publish(json.dumps({**body, "payload": payload}).encode(), routing_key=kind)
        found = wait_for(
            lambda q=queue: dead_letters(world.stack, victim["id"], q), what=f"{kind} dead letter"
        )
        [(headers, _)] = found  # type: ignore[misc]
        assert headers["x-conveyor-reason"] == "job_mismatch"
    after = world.stack.job(victim["id"])
    assert (after.state, after.attempt, after.tenant_id) == ("queued", 0, before.tenant_id)
