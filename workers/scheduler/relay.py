"""Outbox relay: publish committed rows with confirms, then delete them.

A crash after publishing but before the delete commits re-publishes the batch: delivery is
at-least-once and workers skip jobs that are no longer queued.
"""

from __future__ import annotations

from collections import Counter

import structlog
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import session_scope
from shared.db.repos import outbox as outbox_repo
from shared.messaging.publisher import Publisher
from shared.metrics import OUTBOX_PUBLISHED

log = structlog.get_logger("scheduler")


def relay_once(sessions: sessionmaker[Session], publisher: Publisher, *, batch_size: int) -> int:
    """Publish one batch of due rows; returns how many were published."""
    with session_scope(sessions) as session:
        batch = outbox_repo.claim_due(session, batch_size)
        if not batch:
            return 0
        publisher.publish(batch)  # raises PublishError: rows stay pending, transaction rolls back
        outbox_repo.delete_published(session, [m.id for m in batch])
    for exchange, count in Counter(m.exchange or "(default)" for m in batch).items():
        OUTBOX_PUBLISHED.labels(exchange).inc(count)
    return len(batch)


def relay_pause_s(published: int, batch_size: int, gather_s: float) -> float:
    """How long the relay lets rows gather after a pass that published `published`.

    A full batch means a backlog: go again at once. A lone row means a quiet system: its
    next row goes out as soon as it is committed. Several rows, fewer than a batch, mean a
    steady flow (completion events of a busy pool): waiting `gather_s` turns many small
    passes (claim, publish, confirm, delete, commit each) into fewer larger ones.
    """
    if 1 < published < batch_size:
        return gather_s
    return 0.0
