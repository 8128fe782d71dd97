"""Dramatiq broker set-up: RabbitMQ (our wire format) or the in-process StubBroker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Middleware, ShutdownNotifications, TimeLimit

from shared.messaging.names import MAX_PRIORITY
from shared.messaging.translate import encode, to_dramatiq

log = structlog.get_logger("messaging")


class _EnvelopeConsumer(_RabbitmqConsumer):
    """Reads Conveyor envelopes (ours or foreign) and hands Dramatiq its own message format.

    Dramatiq's consumer decodes the body itself; we translate the body first, knowing the
    queue it came from, so malformed messages reach the reject actor instead of a bare nack.
    """

    def __init__(
        self, broker: ConveyorRabbitmqBroker, queue_name: str, prefetch: int, timeout: int
    ) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        self.iterator = self._translated(self.iterator, broker)

    def _translated(self, raw: Iterator[Any], broker: ConveyorRabbitmqBroker) -> Iterator[Any]:
        for method, properties, body in raw:
            if method is None or self.queue_name.endswith((".DQ", ".XQ")):
                yield method, properties, body
                continue
            message = to_dramatiq(
                body,
                queue=self.queue_name,
                redelivered=bool(method.redelivered),
                known_kinds=broker.actors,
                amqp_message_id=getattr(properties, "message_id", None),
            )
            yield method, properties, encode(message)


class ConveyorRabbitmqBroker(RabbitmqBroker):
    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return _EnvelopeConsumer


def conveyor_middleware() -> list[Middleware]:
    # No Retries middleware: retries and delays live in PostgreSQL, never in worker memory.
    return [TimeLimit(), ShutdownNotifications(), CurrentMessage()]


def make_broker(
    broker_url: str | None, *, extra_middleware: list[Middleware] | None = None
) -> dramatiq.Broker:
    middleware = conveyor_middleware() + list(extra_middleware or [])
    broker: dramatiq.Broker
    if broker_url:
        broker = ConveyorRabbitmqBroker(
            url=broker_url, max_priority=MAX_PRIORITY, confirm_delivery=True, middleware=middleware
        )
    else:
        log.warning("messaging.stub_broker", detail="no CONVEYOR_BROKER_URL: in-process StubBroker")
        broker = StubBroker(middleware=middleware)
    dramatiq.set_broker(broker)
    return broker
