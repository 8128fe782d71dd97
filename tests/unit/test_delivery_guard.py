"""No delivery is acknowledged unhandled: the delivery guard on Dramatiq's in-memory broker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import dramatiq
import psycopg
import pytest
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import exc as sa_exc

from shared.db.engine import is_unreachable
from shared.messaging.delivery import REQUEUE_OPTION, DatabaseGate, DeliveryGuard


class Probe:
    def __init__(self) -> None:
        self.up = True
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.up


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def letters() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def broker(probe: Probe, letters: list[tuple[str, str]]) -> Iterator[StubBroker]:
    def dead_letter(message: Any, reason: str, detail: str) -> bool:
        letters.append((reason, detail))
        return True

    stub = StubBroker(middleware=[])
    stub.add_middleware(DeliveryGuard(DatabaseGate(probe, interval_s=0.01), dead_letter))
    stub.emit_after("process_boot")
    yield stub
    stub.close()


def run(broker: StubBroker, fn: Any, *, after: Any = None) -> list[Any]:
    """Send one message to an actor running `fn`, then call `after()` while the worker still
    runs; returns the broker's dead letters."""
    actor = dramatiq.actor(fn, broker=broker, actor_name=f"a{id(fn)}", queue_name="q")
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        actor.send()
        broker.join("q", fail_fast=False)
        worker.join()
        if after is not None:
            after()
    finally:
        worker.stop()
    return list(broker.dead_letters)


def test_an_unexpected_error_is_dead_lettered_with_a_reason_then_acked(
    broker: StubBroker, letters: list[tuple[str, str]]
) -> None:
    def bug() -> None:
        raise TypeError("can't compare offset-naive and offset-aware datetimes")

    assert run(broker, bug) == []  # acked: its copy is in the dead-letter queue
    assert letters == [
        ("unhandled_error", "TypeError: can't compare offset-naive and offset-aware datetimes")
    ]


def test_if_the_dead_letter_cannot_be_stored_the_message_is_nacked(
    probe: Probe,
) -> None:
    stub = StubBroker(middleware=[])
    stub.add_middleware(DeliveryGuard(DatabaseGate(probe), lambda *_: False))
    stub.emit_after("process_boot")

    def bug() -> None:
        raise ValueError("x")

    [nacked] = run(stub, bug)
    assert not nacked.options.get(REQUEUE_OPTION)  # RabbitMQ dead-letters a plain nack


def test_database_unreachable_requeues_and_pauses_until_the_database_is_back(
    broker: StubBroker, probe: Probe, letters: list[tuple[str, str]]
) -> None:
    guard = next(m for m in broker.middleware if isinstance(m, DeliveryGuard))
    probe.up = False

    def lost_connection() -> None:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    gate_open: list[bool] = []
    [requeued] = run(broker, lost_connection, after=lambda: gate_open.append(guard.gate.is_open))
    assert requeued.options[REQUEUE_OPTION] is True  # basic_nack(requeue=True) on RabbitMQ
    assert letters == []
    assert gate_open == [False]  # closed until a probe succeeds


def test_a_closed_gate_holds_deliveries_until_the_probe_succeeds(probe: Probe) -> None:
    gate = DatabaseGate(probe, interval_s=0.01)
    probe.up = False
    gate.close()
    waiting = threading.Thread(target=gate.wait_open)
    waiting.start()
    waiting.join(0.2)
    assert waiting.is_alive()  # deliveries wait while the probe fails
    assert probe.calls > 1
    probe.up = True
    waiting.join(5)
    assert not waiting.is_alive()
    assert gate.is_open


def test_a_stopping_worker_is_not_held_by_a_closed_gate(probe: Probe) -> None:
    gate = DatabaseGate(probe, interval_s=0.01)
    probe.up = False
    gate.close()
    gate.stop_waiting()
    gate.wait_open()  # returns at once


@pytest.mark.parametrize(
    ("exc", "unreachable"),
    [
        (psycopg.OperationalError("connection refused"), True),
        (psycopg.errors.AdminShutdown("terminating connection"), True),
        (psycopg.errors.CannotConnectNow("the database system is starting up"), True),
        (psycopg.InterfaceError("the connection is closed"), True),
        (psycopg.errors.QueryCanceled("statement timeout"), False),
        (psycopg.errors.UniqueViolation("duplicate key"), False),
        (ValueError("not a database error"), False),
        (sa_exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("gone")), True),
    ],
)
def test_which_errors_mean_the_database_is_unreachable(
    exc: BaseException, unreachable: bool
) -> None:
    assert is_unreachable(exc) is unreachable


def test_unreachable_is_found_through_the_cause_chain() -> None:
    try:
        try:
            raise psycopg.OperationalError("server closed the connection")
        except psycopg.OperationalError as inner:
            raise RuntimeError("claim failed") from inner
    except RuntimeError as outer:
        assert is_unreachable(outer)
