"""Pools, queue and exchange names: the RabbitMQ topology in one place."""

from __future__ import annotations

from enum import StrEnum


class Pool(StrEnum):
    DEFAULT = "default"
    MEDIA = "media"
    BACKUP = "backup"
    SYNC = "sync"
    EXPORT = "export"
    OAUTH = "oauth"


class Priority(StrEnum):
    """Two lanes that really reorder work (RabbitMQ priority queues), plus a middle one."""

    INTERACTIVE = "interactive"
    NORMAL = "normal"
    BULK = "bulk"


AMQP_PRIORITY: dict[Priority, int] = {Priority.INTERACTIVE: 9, Priority.NORMAL: 5, Priority.BULK: 0}
MAX_PRIORITY = 10

JOBS_EXCHANGE = "conveyor.jobs"  # direct; routing key = job kind
UNROUTED_EXCHANGE = "conveyor.unrouted"  # alternate exchange: unknown kinds land in default
EVENTS_EXCHANGE = "conveyor.events"  # topic; routing key = job.<kind>.<state>
REJECT_ACTOR = "conveyor.reject"

REASON_HEADER = "x-conveyor-reason"
DETAIL_HEADER = "x-conveyor-detail"
SOURCE_QUEUE_HEADER = "x-conveyor-source-queue"


def queue_name(pool: Pool | str) -> str:
    return f"conveyor.{Pool(pool).value}"


def dead_letter_queue(queue: str) -> str:
    """Dramatiq's naming: the `.XQ` queue beside each work queue is the dead-letter queue."""
    return f"{queue}.XQ"


def event_routing_key(kind: str, state: str) -> str:
    return f"job.{kind}.{state}"


def amqp_priority(priority: Priority | str) -> int:
    return AMQP_PRIORITY[Priority(priority)]


def priority_from_amqp(value: int) -> Priority:
    """The lane a stored AMQP priority belongs to (unknown values count as normal)."""
    return {v: k for k, v in AMQP_PRIORITY.items()}.get(value, Priority.NORMAL)
