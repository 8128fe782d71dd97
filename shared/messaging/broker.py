"""Dramatiq broker set-up: RabbitMQ (our wire format) or the in-process StubBroker."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import dramatiq
import pika
import structlog
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer
from dramatiq.brokers.stub import StubBroker
from dramatiq.errors import ConnectionClosed
from dramatiq.middleware import CurrentMessage, Middleware, ShutdownNotifications, TimeLimit

from shared.messaging.delivery import REQUEUE_OPTION, DatabaseGate, DeliveryGuard
from shared.messaging.names import (
    DETAIL_HEADER,
    MAX_PRIORITY,
    REASON_HEADER,
    SOURCE_QUEUE_HEADER,
    dead_letter_queue,
)
from shared.messaging.translate import encode, to_dramatiq
from shared.messaging.wire_auth import SIGNATURE_HEADER, WireAuth

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
                auth=broker.wire_auth,
                publisher=getattr(properties, "user_id", None),
                signature=_header(properties, SIGNATURE_HEADER),
                amqp_message_id=getattr(properties, "message_id", None),
            )
            yield method, properties, encode(message)

    def nack(self, message: Any) -> None:
        """Dramatiq's nack never requeues; the delivery guard asks for it when the message
        must come back (database unreachable, worker stopping)."""
        if not message.options.get(REQUEUE_OPTION):
            super().nack(message)  # type: ignore[no-untyped-call]
            return
        try:
            self.known_tags.remove(message._tag)
            self.connection.add_callback_threadsafe(
                partial(self.channel.basic_nack, message._tag, requeue=True)
            )
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as e:
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]
        except KeyError:
            # A copy from a channel that has since closed: RabbitMQ already requeued it.
            log.info("messaging.requeue_of_stale_delivery", message_id=message.message_id)


def _header(properties: Any, name: str) -> str | None:
    value = (getattr(properties, "headers", None) or {}).get(name)
    if isinstance(value, bytes):  # AMQP long strings may arrive as bytes
        value = value.decode(errors="replace")
    return value if isinstance(value, str) else None


class ConveyorRabbitmqBroker(RabbitmqBroker):
    def __init__(self, *, url: str, wire_auth: WireAuth | None = None, **kwargs: Any) -> None:
        """Without `wire_auth` only the URL's own user (the service user) is trusted."""
        super().__init__(url=url, **kwargs)
        self.wire_auth = wire_auth or WireAuth.from_settings(url, [], {})

    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return _EnvelopeConsumer


def conveyor_middleware() -> list[Middleware]:
    # No Retries middleware: retries and delays live in PostgreSQL, never in worker memory.
    return [TimeLimit(), ShutdownNotifications(), CurrentMessage()]


def make_broker(
    broker_url: str | None,
    *,
    extra_middleware: list[Middleware] | None = None,
    database_probe: Callable[[], bool] | None = None,
    wire_auth: WireAuth | None = None,
) -> dramatiq.Broker:
    """With `database_probe` (workers), a DeliveryGuard runs first (shared/messaging/delivery).

    `wire_auth` decides which publishers' messages run; by default only the broker URL's own
    user (Conveyor's service user) is trusted and foreign publishers are dead-lettered.
    """
    middleware = conveyor_middleware() + list(extra_middleware or [])
    broker: dramatiq.Broker
    if broker_url:
        broker = ConveyorRabbitmqBroker(
            url=broker_url,
            max_priority=MAX_PRIORITY,
            confirm_delivery=True,
            middleware=middleware,
            wire_auth=wire_auth,
        )
    else:
        log.warning("messaging.stub_broker", detail="no CONVEYOR_BROKER_URL: in-process StubBroker")
        broker = StubBroker(middleware=middleware)
    if database_probe is not None:
        letterer = partial(_publish_dead_letter, broker) if broker_url else _no_dead_letter
        guard = DeliveryGuard(DatabaseGate(database_probe), letterer)
        # Before TimeLimit: a delivery waiting for the database is not yet on the clock.
        broker.add_middleware(guard, before=TimeLimit)
    dramatiq.set_broker(broker)
    return broker


def original_body(message: Any) -> bytes:
    """The bytes the message arrived with, as far as they can be rebuilt."""
    kwargs = message.kwargs
    if "body_b64" in kwargs:
        return base64.b64decode(kwargs["body_b64"])
    if "envelope" in kwargs:
        return json.dumps(kwargs["envelope"], separators=(",", ":")).encode()
    return json.dumps(message.asdict(), default=str).encode()


def _publish_dead_letter(broker: dramatiq.Broker, message: Any, reason: str, detail: str) -> bool:
    """Straight to the pool's dead-letter queue (the database may be what failed), confirmed."""
    assert isinstance(broker, RabbitmqBroker)
    headers = {
        REASON_HEADER: reason,
        DETAIL_HEADER: detail,
        SOURCE_QUEUE_HEADER: message.queue_name,
    }
    try:
        broker.channel.basic_publish(
            exchange="",
            routing_key=dead_letter_queue(message.queue_name),
            body=original_body(message),
            properties=pika.BasicProperties(
                headers=headers, delivery_mode=2, content_type="application/json"
            ),
            mandatory=True,
        )
        return True
    except Exception:
        log.warning("messaging.dead_letter_failed", exc_info=True)
        return False


def _no_dead_letter(message: Any, reason: str, detail: str) -> bool:
    return False  # the StubBroker keeps failed messages in its own dead-letter list
