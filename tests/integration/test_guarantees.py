"""Guarantees of docs/lifecycle.md that need a fault placed exactly: a relay crash between
publishing and marking, concurrent requests with one Idempotency-Key, outbox pruning.

Each docstring names the deliberate mutation of the code that made the test fail.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import delete, func, select, text, update

from shared.db.engine import session_scope
from shared.db.models import Job, OutboxMessage
from shared.db.repos import outbox as outbox_repo
from shared.db.repos.outbox import PendingMessage
from shared.jobs.submit import NewJob, submit_jobs
from shared.messaging.publisher import AmqpPublisher, Publisher
from tests.support.ingress import start_ingress
from tests.support.logs import log_events
from tests.support.services import rabbitmqctl, wait_for
from tests.support.stack import Stack
from workers.scheduler.relay import relay_once

pytestmark = pytest.mark.integration


class RelayCrashed(Exception):
    """Stands for the scheduler process dying: its transaction never commits."""


class CrashAfterPublish:
    """Publishes for real (confirmed by RabbitMQ), then 'crashes' before the rows are marked."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner
        self.published = 0

    def publish(self, batch: Sequence[PendingMessage]) -> None:
        self.inner.publish(batch)
        self.published += len(batch)
        raise RelayCrashed("crashed between publishing and marking sent")

    def close(self) -> None:
        self.inner.close()


def unsent(stack: Stack, job_id: uuid.UUID) -> int:
    with session_scope(stack.sessions) as session:
        stmt = select(func.count()).where(
            OutboxMessage.job_id == job_id, OutboxMessage.sent_at.is_(None)
        )
        return int(session.execute(stmt).scalar_one())


def test_a_relay_crash_after_publishing_republishes_and_the_job_still_runs_once(
    stack: Stack,
) -> None:
    """The first publish reached RabbitMQ but the relay died before deleting the row: the
    row is still pending, the job runs from the first message, the next relay pass publishes
    it again (and deletes it: published rows do not stay), and the worker skips that duplicate
    (the job is no longer queued).

    Mutation checks: with `relay_once` marking the rows sent (and committing) before
    publishing, the crash left the row marked and nothing was republished; with CLAIM_SQL
    accepting a `succeeded` job, the duplicate ran a second attempt; with the relay marking
    rows sent instead of deleting them, rows stayed. All failed this test."""
    stack.stop_schedulers()  # this test is the relay
    with session_scope(stack.sessions) as session:
        [outcome] = submit_jobs(session, [NewJob("diag.noop", "u", {"sleep_ms": 200})])
    job_id = outcome.job_id
    publisher = AmqpPublisher(stack.amqp_url)
    try:
        crashing = CrashAfterPublish(publisher)
        with pytest.raises(RelayCrashed):
            relay_once(stack.sessions, crashing, batch_size=500)
        assert crashing.published == 1
        assert unsent(stack, job_id) == 1  # the mark rolled back with the crash

        stack.start_worker("default", processes=1, threads=2)
        assert stack.wait_state(job_id, timeout=60).state == "succeeded"
        # Published again, together with the job's completion event.
        assert relay_once(stack.sessions, publisher, batch_size=500) == 2
        assert unsent(stack, job_id) == 0
        with session_scope(stack.sessions) as session:
            assert session.execute(select(func.count()).select_from(OutboxMessage)).scalar() == 0
    finally:
        publisher.close()

    skipped = wait_for(
        lambda: log_events(stack, "worker", event="jobs.delivery_skipped", job_id=str(job_id)),
        timeout=30,
        what="the duplicate delivery skipped",
    )
    assert [e["state"] for e in skipped] == ["succeeded"]  # type: ignore[attr-defined]
    done = stack.job(job_id)
    assert (done.state, done.attempt) == ("succeeded", 1)
    assert [e[2] for e in stack.events(job_id)] == ["queued", "running", "succeeded"]


def test_a_message_the_broker_refuses_keeps_its_batch_in_the_outbox(stack: Stack) -> None:
    """RabbitMQ nacks a publish (here: a full queue that rejects publishes): the batch is not
    confirmed, so the relay raises PublishError and the rows stay pending for the next pass.
    Mutation check: the publisher's channel without publisher confirms → the relay deleted
    the row of a message RabbitMQ had refused."""
    import pika

    from shared.messaging.publisher import PublishError

    stack.stop_schedulers()  # this test is the relay
    full = f"full-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(stack.amqp_url))
    try:
        arguments = {"x-max-length": 0, "x-overflow": "reject-publish"}
        connection.channel().queue_declare(full, auto_delete=True, arguments=arguments)
        with session_scope(stack.sessions) as session:
            session.execute(delete(OutboxMessage))  # this test's row alone
            outbox_repo.add_many(
                session, [{"exchange": "", "routing_key": full, "body": b"{}", "priority": 0}]
            )
        publisher = AmqpPublisher(stack.amqp_url)
        try:
            with pytest.raises(PublishError, match="Nack"):
                relay_once(stack.sessions, publisher, batch_size=500)
        finally:
            publisher.close()
        with session_scope(stack.sessions) as session:
            pending = session.execute(select(OutboxMessage.routing_key)).scalars().all()
        assert pending == [full]
        with session_scope(stack.sessions) as session:
            session.execute(delete(OutboxMessage))
    finally:
        connection.close()


def test_the_relay_publisher_reconnects_after_its_connection_is_closed(stack: Stack) -> None:
    """RabbitMQ closes the relay's connection between two batches: a publish on the dead
    channel fails as a PublishError (rows stay pending), a later one opens a new connection
    and is confirmed, and each confirmed message is in the queue once. An unreachable broker
    is a PublishError too, not a hang. Mutation check: with the publisher keeping its closed
    channel (no open check, no reset after a failed publish, close callbacks not dropping
    it), every publish after the close failed. Any one of the three recovers on its own (by
    design), so only removing all three fails this test. Without the connect lock, the
    concurrent first publishes closed each other's connections ("cannot connect")."""
    import pika

    from shared.messaging.publisher import PublishError

    queue = f"relay-{uuid.uuid4().hex[:8]}"

    def queued() -> int:
        connection = pika.BlockingConnection(pika.URLParameters(stack.amqp_url))
        try:
            return connection.channel().queue_declare(queue, durable=True).method.message_count
        finally:
            connection.close()

    queued()  # declares it
    message = PendingMessage(
        id=1, exchange="", routing_key=queue, body=b"{}", headers=None, priority=0
    )
    publisher = AmqpPublisher(stack.amqp_url)
    try:
        publisher.publish([message])
        rabbitmqctl("close_all_connections", "-p", stack.vhost, "test: relay connection lost")
        failures: list[str] = []

        def published() -> bool:
            try:
                publisher.publish([message, message])
            except PublishError as exc:
                failures.append(str(exc))
                return False
            return True

        wait_for(published, timeout=60, what="a publish on a new connection")
        assert queued() == 1 + 2, failures
    finally:
        publisher.close()
    publisher.close()  # a second close returns at once

    # Four threads' first publishes open ONE connection (the others wait for it).
    fresh = AmqpPublisher(stack.amqp_url)
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: fresh.publish([message] * 5), range(4)))
        assert queued() == 3 + 20
    finally:
        fresh.close()

    unreachable = AmqpPublisher("amqp://guest:guest@127.0.0.1:1/%2F", timeout_s=30)
    try:
        with pytest.raises(PublishError, match="connect"):
            unreachable.publish([message])
    finally:
        unreachable.close()


def test_concurrent_requests_with_one_idempotency_key_create_one_job(stack: Stack) -> None:
    """16 simultaneous POSTs with the same key on a real ingress: one 202, fifteen replays of
    the same job, one row. Mutation check: with `insert_jobs` without ON CONFLICT DO
    NOTHING, the losers of the race got 500s and this test failed."""
    url = start_ingress(stack)
    headers = {**stack.headers(), "Idempotency-Key": f"race-{uuid.uuid4().hex[:8]}"}
    body = {"kind": "diag.noop", "user_id": "racer", "payload": {}}
    start = threading.Barrier(16)

    def post(_: int) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            start.wait(timeout=60)
            return client.post(f"{url}/v1/jobs", json=body, headers=headers)

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(post, range(16)))

    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 15 + [202], [r.text for r in responses]
    assert {r.json()["id"] for r in responses} == {responses[0].json()["id"]}
    replays = [r for r in responses if r.status_code == 200]
    assert all(r.headers["Idempotent-Replayed"] == "true" for r in replays)
    with session_scope(stack.sessions) as session:
        count = session.execute(
            select(func.count()).where(Job.idempotency_key == headers["Idempotency-Key"])
        ).scalar_one()
    assert count == 1


def test_sent_outbox_rows_are_pruned_after_the_retention_and_others_kept(stack: Stack) -> None:
    """Under a 600 s retention (the 3600 s default would keep every row here): a row sent 30
    minutes ago is deleted; one sent a minute ago and an unsent one from last week are kept.
    Mutation check: with `prune_sent` deleting by `created_at` instead of `sent_at`, the
    old unsent row was deleted and this test failed."""
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    ids = {}
    with session_scope(stack.sessions) as session:
        for name in ("old_sent", "recent_sent", "old_unsent"):
            outbox_repo.add_many(
                session,
                [
                    outbox_repo.outbox_row(
                        exchange="",
                        routing_key=f"nowhere.{name}",
                        body=b"{}",
                        publish_after=tomorrow,
                    )
                ],
            )
        rows = select(OutboxMessage.id, OutboxMessage.routing_key).where(
            OutboxMessage.routing_key.startswith("nowhere.")
        )
        for row in session.execute(rows):
            ids[row.routing_key.removeprefix("nowhere.")] = row.id
        ages = {"old_sent": 1800, "recent_sent": 60}
        for name, age in ages.items():
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == ids[name])
                .values(sent_at=func.now() - timedelta(seconds=age))
            )
        session.execute(
            text("UPDATE outbox SET created_at = now() - interval '7 days' WHERE id = :id"),
            {"id": ids["old_unsent"]},
        )

    def remaining() -> set[str]:
        with session_scope(stack.sessions) as session:
            found = set(session.execute(select(OutboxMessage.id)).scalars())
        return {name for name, i in ids.items() if i in found}

    stack.stop_schedulers()
    stack.start_scheduler(CONVEYOR_OUTBOX_RETENTION_S="600")  # prunes when it becomes leader
    wait_for(lambda: "old_sent" not in remaining(), timeout=60, what="the old sent row pruned")
    assert remaining() == {"recent_sent", "old_unsent"}
