"""The submit hand-off steps aside while RabbitMQ fails or confirms nothing: the messages
are the relay's (their rows fall due after the grace) and nothing piles up in the process.

Mutation checks: `publish` ignoring the pause → the first test failed; ignoring the cap on
unconfirmed messages → the second."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence

from shared.db.repos.outbox import PendingMessage
from shared.messaging.handoff import Handoff


class HeldPublisher:
    """Futures the test completes itself; records what it was given."""

    def __init__(self) -> None:
        self.futures: list[concurrent.futures.Future[None]] = []

    def publish_nowait(self, batch: Sequence[PendingMessage]) -> concurrent.futures.Future[None]:
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.futures.append(future)
        return future


def messages(count: int) -> list[PendingMessage]:
    return [PendingMessage(0, "conveyor.jobs", "diag.noop", b"{}", None, 0)] * count


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def handoff(publisher: HeldPublisher, clock: Clock, **options: float) -> Handoff:
    return Handoff(publisher, "postgresql://unused", grace_s=10, monotonic=clock, **options)  # type: ignore[arg-type]


def test_a_failed_publish_pauses_the_handoff() -> None:
    publisher, clock = HeldPublisher(), Clock()
    handing_off = handoff(publisher, clock, pause_s=5.0)
    assert handing_off.publish(messages(1), [1])
    publisher.futures[0].set_exception(ConnectionError("refused"))
    assert not handing_off.publish(messages(1), [2])  # paused: the relay's
    assert len(publisher.futures) == 1
    clock.now += 5.0
    assert handing_off.publish(messages(1), [3])
    assert len(publisher.futures) == 2


def test_unconfirmed_messages_cap_the_handoff() -> None:
    publisher, clock = HeldPublisher(), Clock()
    handing_off = handoff(publisher, clock, max_in_flight=3, pause_s=0.0)
    assert handing_off.publish(messages(2), [1, 2])
    assert not handing_off.publish(messages(2), [3, 4])  # 4 unconfirmed would be over 3
    assert handing_off.publish(messages(1), [5])
    publisher.futures[0].cancel()  # settled (a channel closed): no longer in flight
    assert handing_off.publish(messages(2), [6, 7])
    assert len(publisher.futures) == 3


class RefusingPublisher(HeldPublisher):
    """Raises at once (its loop gone) until `refusing` is cleared."""

    refusing = True

    def publish_nowait(self, batch: Sequence[PendingMessage]) -> concurrent.futures.Future[None]:
        if self.refusing:
            raise RuntimeError("event loop is closed")
        return super().publish_nowait(batch)


def test_a_publisher_that_raises_holds_nothing_in_flight_and_pauses() -> None:
    """Mutation check: `publish` not settling a synchronous failure → after `max_in_flight`
    of them the hand-off was off for good."""
    publisher, clock = RefusingPublisher(), Clock()
    handing_off = handoff(publisher, clock, max_in_flight=2, pause_s=5.0)
    for _ in range(3):
        assert not handing_off.publish(messages(2), [1, 2])
        clock.now += 5.0
    publisher.refusing = False  # RabbitMQ back
    assert handing_off.publish(messages(2), [3, 4])
    assert len(publisher.futures) == 1


def test_a_closed_handoff_publishes_nothing() -> None:
    publisher, clock = HeldPublisher(), Clock()
    handing_off = handoff(publisher, clock)
    handing_off.close(timeout_s=1)
    assert not handing_off.publish(messages(1), [1])
    assert publisher.futures == []
