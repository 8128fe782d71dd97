"""Declare exchanges, queues and bindings (idempotent; run by the relay and `conveyor migrate`)."""

from __future__ import annotations

from collections.abc import Iterable

from dramatiq.brokers.rabbitmq import RabbitmqBroker

from shared.jobs.catalog import KindSpec
from shared.messaging.names import (
    EVENTS_EXCHANGE,
    JOBS_EXCHANGE,
    UNROUTED_EXCHANGE,
    Pool,
    queue_name,
)


def declare_topology(broker: RabbitmqBroker, specs: Iterable[KindSpec]) -> None:
    # Queues through Dramatiq so their arguments (dead-letter, max priority) match its own.
    for pool in Pool:
        broker.declare_queue(queue_name(pool), ensure=True)
    channel = broker.channel
    channel.exchange_declare(UNROUTED_EXCHANGE, "fanout", durable=True)
    channel.exchange_declare(
        JOBS_EXCHANGE, "direct", durable=True, arguments={"alternate-exchange": UNROUTED_EXCHANGE}
    )
    channel.exchange_declare(EVENTS_EXCHANGE, "topic", durable=True)
    # Unknown kinds fall through to the default pool, whose worker dead-letters them with a reason.
    channel.queue_bind(queue_name(Pool.DEFAULT), UNROUTED_EXCHANGE)
    for spec in specs:
        channel.queue_bind(queue_name(spec.pool), JOBS_EXCHANGE, routing_key=spec.kind)
