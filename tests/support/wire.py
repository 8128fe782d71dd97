"""Foreign publishers for wire tests: real RabbitMQ users, raw pika publishes, DLQ reads.

The users get the permissions `deploy/rabbitmq/definitions.json` gives its example users, so
the deploy file is exercised against a real broker, not only checked for shape.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pika
from pika.adapters.blocking_connection import BlockingChannel

from tests.support.services import rabbitmqctl
from tests.support.stack import Stack

EXCHANGE = "conveyor.jobs"  # spelled out: these tests play publishers that have only the docs
DEFINITIONS = Path(__file__).parents[2] / "deploy" / "rabbitmq" / "definitions.json"
SERVICE_USER = "conveyor"  # the service user in the definitions
FOREIGN_USER = "crm-svc"  # the example foreign publisher in the definitions


def definitions() -> dict[str, Any]:
    return dict(json.loads(DEFINITIONS.read_text()))


def permissions_of(user: str) -> tuple[str, str, str]:
    """(configure, write, read) of `user` in the deploy definitions."""
    [entry] = [p for p in definitions()["permissions"] if p["user"] == user]
    return entry["configure"], entry["write"], entry["read"]


@dataclass(frozen=True)
class AmqpUser:
    name: str
    url: str

    def channel(self) -> BlockingChannel:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = connection.channel()
        channel.confirm_delivery()
        return channel

    @contextmanager
    def publisher(self) -> Iterator[ForeignPublisher]:
        channel = self.channel()
        try:
            yield ForeignPublisher(channel, self.name)
        finally:
            if channel.connection.is_open:
                channel.connection.close()


@dataclass(frozen=True)
class ForeignPublisher:
    """Publishes as the documentation tells a foreign service to: `user_id` = its own user."""

    channel: BlockingChannel
    user: str

    def publish(self, body: bytes, routing_key: str = "diag.noop", **properties: Any) -> None:
        properties.setdefault("user_id", self.user)
        publish(self.channel, body, routing_key, **properties)


def _url_for(stack_url: str, name: str, password: str) -> str:
    parts = urlsplit(stack_url)
    netloc = f"{quote(name, safe='')}:{password}@{parts.hostname}:{parts.port or 5672}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@contextmanager
def amqp_user(stack: Stack, *, like: str = FOREIGN_USER) -> Iterator[AmqpUser]:
    """A RabbitMQ user with the permissions `like` has in the definitions, on the test's vhost;
    deleted afterwards."""
    name = f"test-{like}-{secrets.token_hex(4)}"
    password = secrets.token_hex(16)
    rabbitmqctl("add_user", name, password)
    try:
        rabbitmqctl("set_permissions", "-p", stack.vhost, name, *permissions_of(like))
        yield AmqpUser(name, _url_for(stack.amqp_url, name, password))
    finally:
        rabbitmqctl("delete_user", name)


def publish(
    channel: BlockingChannel, body: bytes, routing_key: str = "diag.noop", **properties: Any
) -> None:
    channel.basic_publish(
        EXCHANGE, routing_key, body, pika.BasicProperties(delivery_mode=2, **properties)
    )


def dead_letters(
    stack: Stack, marker: str, queue: str = "conveyor.default.XQ"
) -> list[tuple[dict[str, Any], bytes]]:
    """Messages in a dead-letter queue whose body contains `marker` (consumed)."""
    channel = stack.amqp_channel()
    found = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            break
        if marker.encode() in body:
            found.append((dict(properties.headers or {}), body))
            channel.basic_ack(method.delivery_tag)
    channel.connection.close()
    return found
