"""Submit hand-off: the submitting process publishes its new jobs' messages right after its
commit, instead of leaving them to the relay's next pass.

The outbox row is still written in the submit's transaction (a committed job is published),
but due only `grace_s` later. If the hand-off fails (RabbitMQ unreachable, a nack, the
process gone between its commit and the confirms) the relay publishes the row once it is
due, as it does any row. After RabbitMQ confirms, the row is deleted, in batches, by a
thread of the hand-off's own. A delete that comes too late (the relay was first) means a
second message for the job, which the worker's claim skips like any redelivery.

Measured (docs/benchmarks.md, "Stop 27"): under a steady background load, most of a job's
submit → claimed time was the wait for the relay's next pass.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from shared.batching import gather
from shared.db.repos.outbox import PendingMessage
from shared.metrics import OUTBOX_PUBLISHED

log = structlog.get_logger("messaging")

_STAGED = "conveyor.handoff"  # session.info key: the transaction's [_Staged]
_STOP: list[int] = []  # the deleter's stop sentinel (compared by identity)


class AsyncPublisher(Protocol):
    def publish_nowait(
        self, batch: Sequence[PendingMessage]
    ) -> concurrent.futures.Future[None]: ...


class Handoff:
    def __init__(
        self,
        publisher: AsyncPublisher,
        dsn: str,
        *,
        grace_s: float,
        max_batch: int = 64,  # commits' worth of ids per DELETE
        window_s: float = 0.005,
        max_in_flight: int = 10_000,  # messages awaiting confirms (a blocked RabbitMQ)
        pause_s: float = 5.0,  # no hand-off this long after a failed one
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grace_s = grace_s
        self._publisher = publisher
        self._dsn = dsn
        self._max_batch = max_batch
        self._window_s = window_s
        self._max_in_flight = max_in_flight
        self._pause_s = pause_s
        self._monotonic = monotonic
        self._lock = threading.Condition()  # notified when nothing is in flight
        self._in_flight = 0
        self._paused_until = 0.0
        self._closed = False
        self._deletes: queue.Queue[list[int]] = queue.Queue()
        self._deleter = threading.Thread(target=self._delete_loop, name="handoff", daemon=True)
        self._deleter.start()

    def stage(
        self, session: Session, messages: Sequence[PendingMessage], *, outbox_ids: Sequence[int]
    ) -> None:
        """Publish `messages` once `session`'s transaction commits, then delete their rows
        (`outbox_ids`; the messages' own ids are not used); forget them if it rolls back.
        Not inside a savepoint: its rollback would leave the messages naming jobs that never
        were (a worker would take them for a foreign publisher's and adopt them). Nor with a
        session joined to a transaction of its caller's connection: its commit is not the
        real one (the ingress and the publish API own their sessions' transactions)."""
        if not messages:
            return
        if session.in_nested_transaction():
            raise ValueError("a hand-off is staged in the outermost transaction only")
        root = session.get_transaction()
        if root is None:  # the insert that made the rows began one: nothing can be staged
            raise ValueError("a hand-off is staged inside the submit's transaction")
        staged = _Staged(root, self, list(messages), list(outbox_ids))
        session.info.setdefault(_STAGED, []).append(staged)

    def publish(self, messages: list[PendingMessage], outbox_ids: list[int]) -> bool:
        """Publish committed messages unless RabbitMQ failed a moment ago or has too many
        unconfirmed: then they wait for the relay (grace_s), and nothing piles up here
        during an outage. Returns whether they were handed to the publisher."""
        with self._lock:
            if (
                self._closed
                or self._monotonic() < self._paused_until
                or self._in_flight + len(messages) > self._max_in_flight
            ):
                return False
            self._in_flight += len(messages)
        try:
            future = self._publisher.publish_nowait(messages)
        except Exception as exc:
            self._settled(len(messages), exc)
            log.warning("messaging.handoff_failed", error=str(exc), messages=len(messages))
            return False
        future.add_done_callback(lambda f: self._confirmed(messages, outbox_ids, f))
        return True

    def _settled(self, count: int, error: BaseException | None) -> None:
        with self._lock:
            self._in_flight -= count
            if error is not None:
                self._paused_until = self._monotonic() + self._pause_s
            if self._in_flight == 0:
                self._lock.notify_all()

    def _confirmed(
        self,
        messages: list[PendingMessage],
        outbox_ids: list[int],
        future: concurrent.futures.Future[None],
    ) -> None:
        # On the publisher's thread: no waiting here.
        error = future.exception() if not future.cancelled() else RuntimeError("cancelled")
        self._settled(len(messages), error)
        if error is not None:
            log.warning("messaging.handoff_failed", error=str(error), messages=len(messages))
            return  # the relay publishes them when they fall due
        OUTBOX_PUBLISHED.labels(messages[0].exchange or "(default)").inc(len(messages))
        self._deletes.put(outbox_ids)

    def _delete_loop(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while True:
            batches = gather(self._deletes, self._max_batch, self._window_s)
            stop = any(b is _STOP for b in batches)
            ids = [i for b in batches if b is not _STOP for i in b]
            if ids:
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(
                            self._dsn,
                            autocommit=True,
                            connect_timeout=5,
                            application_name="conveyor-handoff",
                        )
                    conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (ids,))
                except Exception as exc:
                    # Published but not deleted: the relay sends them again when due (a
                    # duplicate the claim skips); the next batch reconnects.
                    log.warning("messaging.handoff_delete_failed", error=str(exc), rows=len(ids))
                    if conn is not None:
                        conn.close()
            if stop:
                if conn is not None:
                    conn.close()
                return

    def close(self, timeout_s: float = 5.0) -> None:
        """Wait for the confirms in flight, delete what was confirmed, then stop (the
        publisher is the caller's to close, after this). What is still unconfirmed after
        `timeout_s` is the relay's once due."""
        with self._lock:
            self._closed = True
            self._lock.wait_for(lambda: self._in_flight == 0, timeout_s)
        self._deletes.put(_STOP)
        self._deleter.join(timeout_s)


@dataclass(frozen=True)
class _Staged:
    transaction: SessionTransaction  # the root transaction whose commit publishes them
    handoff: Handoff
    messages: list[PendingMessage]
    outbox_ids: list[int]


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the outer transaction may still roll back
    committed = session.get_transaction()  # still the committing one while this runs
    for staged in session.info.get(_STAGED, ()):
        if staged.transaction is not committed:
            continue
        try:
            staged.handoff.publish(staged.messages, staged.outbox_ids)
        except Exception:
            # Committed already: the caller must not see an error. The relay has the rows.
            log.warning("messaging.handoff_failed", exc_info=True, messages=len(staged.messages))


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """Committed (published above) or rolled back, a root transaction's messages are done."""
    staged = session.info.get(_STAGED)
    if staged and transaction.parent is None:
        staged[:] = [entry for entry in staged if entry.transaction is not transaction]


# Registered once for every session: a session without staged messages pays a dict lookup.
event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_transaction_end", _after_transaction_end)
