"""Dead-letter queues: inspect them, and replay dead jobs back into their pool."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import session_scope
from shared.db.repos import jobs as jobs_repo
from shared.db.repos import outbox as outbox_repo
from shared.errors import InvalidMessage, PermanentError
from shared.jobs.catalog import get_spec
from shared.jobs.messages import requeue_message
from shared.messaging.contract import parse_envelope
from shared.messaging.names import (
    DETAIL_HEADER,
    REASON_HEADER,
    SOURCE_QUEUE_HEADER,
    Pool,
    dead_letter_queue,
    queue_name,
)


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    reason: str
    detail: str
    source_queue: str
    body: bytes

    def job_id(self) -> uuid.UUID | None:
        try:
            return parse_envelope(self.body).job_id
        except InvalidMessage:
            return None


def _letter(queue: str, properties: pika.BasicProperties, body: bytes) -> DeadLetter:
    headers: dict[str, Any] = dict(properties.headers or {})
    if REASON_HEADER not in headers and "x-death" in headers:
        headers[REASON_HEADER] = "nacked"  # Dramatiq nacked it (e.g. an actor crashed outright)
    return DeadLetter(
        queue,
        str(headers.get(REASON_HEADER, "unknown")),
        str(headers.get(DETAIL_HEADER, "")),
        str(headers.get(SOURCE_QUEUE_HEADER, queue.removesuffix(".XQ"))),
        body,
    )


@contextmanager
def _channel(broker_url: str) -> Iterator[BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        yield connection.channel()
    finally:
        connection.close()  # unacked messages go back to their queue


def dead_letter_queues(pools: list[Pool] | None = None) -> list[str]:
    return [dead_letter_queue(queue_name(p)) for p in (pools or list(Pool))]


def list_dead_letters(
    broker_url: str, *, pools: list[Pool] | None = None, limit: int = 100
) -> list[DeadLetter]:
    """Peek without consuming: messages are fetched unacknowledged and returned on close."""
    letters: list[DeadLetter] = []
    with _channel(broker_url) as channel:
        for queue in dead_letter_queues(pools):
            while len(letters) < limit:
                method, properties, body = channel.basic_get(queue, auto_ack=False)
                if method is None:
                    break
                letters.append(_letter(queue, properties, body))
    return letters


@dataclass(frozen=True)
class ReplayReport:
    replayed: int
    skipped: int


def replay_dead_letters(
    broker_url: str,
    sessions: sessionmaker[Session],
    *,
    pools: list[Pool] | None = None,
    reason: str | None = None,
    limit: int = 100,
) -> ReplayReport:
    """Give dead jobs a fresh attempt budget and queue them again (through the outbox).

    Messages that are not valid envelopes of a dead or failed job stay where they are.
    """
    replayed = skipped = 0
    with _channel(broker_url) as channel:
        for queue in dead_letter_queues(pools):
            while replayed + skipped < limit:
                method, properties, body = channel.basic_get(queue, auto_ack=False)
                if method is None:
                    break
                letter = _letter(queue, properties, body)
                if (reason is None or letter.reason == reason) and _requeue(sessions, letter):
                    channel.basic_ack(method.delivery_tag)
                    replayed += 1
                else:
                    skipped += 1
    return ReplayReport(replayed, skipped)


def _requeue(sessions: sessionmaker[Session], letter: DeadLetter) -> bool:
    try:
        envelope = parse_envelope(letter.body)
        spec = get_spec(envelope.kind)
    except PermanentError:  # not an envelope (InvalidMessage), or a kind no longer known
        return False
    if envelope.job_id is None:
        return False
    with session_scope(sessions) as session:
        job = jobs_repo.lock_for_update(session, envelope.job_id)
        if job is None or job.state not in ("dead", "failed"):
            return False
        previous = job.state
        job.state, job.run_at = "queued", datetime.now(UTC)
        job.max_attempts = job.attempt + spec.max_attempts
        job.error_code = job.error_message = job.finished_at = None
        jobs_repo.add_event(
            session,
            job.id,
            attempt=job.attempt,
            from_state=previous,
            to_state="queued",
            reason="replayed",
        )
        outbox_repo.add_many(session, [requeue_message(job)])
    return True
