"""Publish outbox rows: RabbitMQ with pipelined publisher confirms, or the StubBroker in dev."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Sequence
from itertools import takewhile
from typing import Any, Protocol

import dramatiq
import pika
import structlog
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.channel import Channel

from shared.db.repos.outbox import PendingMessage
from shared.messaging.names import JOBS_EXCHANGE
from shared.messaging.translate import to_dramatiq
from shared.messaging.wire_auth import WireAuth, broker_user

log = structlog.get_logger("messaging")

PERSISTENT = 2  # AMQP delivery mode: written to disk by a durable queue
CONNECT_TIMEOUT_S = 10.0


class PublishError(Exception):
    """Some messages of a batch were not confirmed; the batch stays in the outbox."""


class Publisher(Protocol):
    def publish(self, batch: Sequence[PendingMessage]) -> None: ...

    def close(self) -> None: ...


class _Unconfirmed:
    """One batch's confirms: done when RabbitMQ acked every message, failed on a nack or when
    the channel goes away first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.left = count
        self.done: asyncio.Future[None] = loop.create_future()

    def ack(self) -> None:
        self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)

    def fail(self, reason: str) -> None:
        if not self.done.done():
            self.done.set_exception(PublishError(reason))


class AmqpPublisher:
    """A synchronous facade: a batch's messages are written at once and the batch waits for
    all their confirms (pipelined), on pika's asyncio adapter in a thread of its own.

    pika's blocking channel confirms one message per round trip (~1,600 msg/s here). aio-pika
    pipelined them too, but spent ~130 µs of CPU per message on a task, a timeout, a lock
    and futures per publish; pika's `basic_publish` is a plain call that queues the frames
    (~25 µs per message, docs/benchmarks.md).
    """

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self._parameters = pika.URLParameters(url)
        # RabbitMQ checks it against the connection's user: workers know who published.
        self._user_id = broker_user(url)
        self._timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="amqp-publisher", daemon=True
        )
        self._thread.start()
        # Touched only on the loop's thread:
        self._connection: AsyncioConnection | None = None
        self._channel: Channel | None = None
        self._tag = 0  # the channel's last delivery tag
        self._unconfirmed: dict[int, _Unconfirmed] = {}  # delivery tag -> its batch
        self._connecting = asyncio.Lock()  # two callers never open two connections

    def publish(self, batch: Sequence[PendingMessage]) -> None:
        if not batch:
            return
        future = self.publish_nowait(batch)
        try:
            future.result(self._timeout_s)
        except Exception as exc:
            future.cancel()
            try:
                asyncio.run_coroutine_threadsafe(self._reset(), self._loop).result(self._timeout_s)
            except Exception:
                log.debug("messaging.reset_failed", exc_info=True)
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc

    def publish_nowait(self, batch: Sequence[PendingMessage]) -> concurrent.futures.Future[None]:
        """Queue the batch for publishing; the future is done when RabbitMQ confirmed every
        message, or failed (a nack, the channel gone). Nothing waits for it here: the
        submit hand-off (shared/messaging/handoff.py) reacts to it on the loop's thread."""
        return asyncio.run_coroutine_threadsafe(self._publish(batch), self._loop)

    async def _publish(self, batch: Sequence[PendingMessage]) -> None:
        # `mandatory` off: an event nobody subscribes to is dropped by RabbitMQ instead of
        # coming back as a return (ignored anyway); job messages always route (the jobs
        # exchange's alternate exchange).
        channel = await self._channel_ready()
        waiting = _Unconfirmed(self._loop, len(batch))
        for m in batch:
            properties = pika.BasicProperties(
                delivery_mode=PERSISTENT,
                priority=m.priority,
                headers=m.headers or None,
                content_type="application/json",
                user_id=self._user_id,
            )
            channel.basic_publish(m.exchange, m.routing_key, m.body, properties)
            self._tag += 1
            self._unconfirmed[self._tag] = waiting
        await waiting.done

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if method.multiple:  # every tag up to this one: the dict is in publish (tag) order
            tags = list(takewhile(lambda t: t <= method.delivery_tag, self._unconfirmed))
        else:
            tags = [method.delivery_tag]
        acked = isinstance(method, pika.spec.Basic.Ack)
        for tag in tags:
            waiting = self._unconfirmed.pop(tag, None)
            if waiting is None:
                continue
            if acked:
                waiting.ack()
            else:  # the test for a refused batch matches this wording
                waiting.fail(f"Nack from RabbitMQ for delivery tag {tag}")

    def _fail_unconfirmed(self, reason: str) -> None:
        pending, self._unconfirmed = self._unconfirmed, {}
        for waiting in pending.values():
            waiting.fail(reason)

    def _on_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        if channel is self._channel:
            self._channel = None
        self._fail_unconfirmed(f"channel closed: {reason}")

    def _on_connection_closed(self, connection: AsyncioConnection, reason: BaseException) -> None:
        if connection is self._connection:
            self._connection, self._channel = None, None
        self._fail_unconfirmed(f"connection closed: {reason}")

    async def _channel_ready(self) -> Channel:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        async with self._connecting:
            if self._channel is not None and self._channel.is_open:
                return self._channel  # another caller connected meanwhile
            return await self._connect()

    async def _connect(self) -> Channel:
        await self._reset()
        loop = self._loop
        opened: asyncio.Future[AsyncioConnection] = loop.create_future()

        def settle(future: asyncio.Future[Any], value: Any = None, error: Any = None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(PublishError(f"cannot connect: {error}"))
            else:
                future.set_result(value)

        def closed(connection: AsyncioConnection, reason: BaseException) -> None:
            settle(opened, error=reason)
            self._on_connection_closed(connection, reason)

        self._connection = AsyncioConnection(
            self._parameters,
            on_open_callback=lambda c: settle(opened, c),
            on_open_error_callback=lambda _c, e: settle(opened, error=e),
            on_close_callback=closed,
            custom_ioloop=loop,
        )
        connection = await asyncio.wait_for(opened, CONNECT_TIMEOUT_S)
        channel_opened: asyncio.Future[Channel] = loop.create_future()
        connection.channel(on_open_callback=lambda ch: settle(channel_opened, ch))
        channel = await asyncio.wait_for(channel_opened, CONNECT_TIMEOUT_S)
        channel.add_on_close_callback(self._on_channel_closed)
        confirming: asyncio.Future[None] = loop.create_future()
        channel.confirm_delivery(self._on_confirm, callback=lambda _f: settle(confirming))
        await asyncio.wait_for(confirming, CONNECT_TIMEOUT_S)
        self._channel, self._tag = channel, 0
        return channel

    async def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._fail_unconfirmed("publisher reset")
        if connection is not None and not (connection.is_closed or connection.is_closing):
            try:
                connection.close()
            except Exception:
                log.debug("messaging.close_failed", exc_info=True)

    def close(self) -> None:
        if not self._thread.is_alive():
            return  # closed already
        asyncio.run_coroutine_threadsafe(self._reset(), self._loop).result(self._timeout_s)
        # Let the close handshake's frames go out before the loop stops.
        self._loop.call_soon_threadsafe(self._loop.call_later, 0.2, self._loop.stop)
        self._thread.join(5)


STUB_PUBLISHER = "conveyor-dev"


class StubPublisher:
    """`conveyor dev` without RabbitMQ: job messages go to the in-process StubBroker."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        self._broker = broker
        self._auth = WireAuth(frozenset({STUB_PUBLISHER}))  # in-process: only we publish
        self.dead_letters: list[PendingMessage] = []

    def publish(self, batch: Sequence[PendingMessage]) -> None:
        from shared.jobs.catalog import get_spec
        from shared.messaging.names import queue_name

        for m in batch:
            if m.exchange != JOBS_EXCHANGE:
                if m.exchange == "":
                    self.dead_letters.append(m)
                continue  # events have no subscribers in-process
            known = set(self._broker.actors)
            try:
                queue = queue_name(get_spec(m.routing_key).pool)
            except Exception:
                queue = queue_name("default")
            data = to_dramatiq(
                m.body,
                queue=queue,
                redelivered=False,
                known_kinds=known,
                auth=self._auth,
                publisher=STUB_PUBLISHER,
            )
            self._broker.enqueue(dramatiq.Message(**data))

    def close(self) -> None:
        return None
