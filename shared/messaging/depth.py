"""Queue depth for `conveyor status` and /metrics.

With the management API (CONVEYOR_RABBITMQ_API_URL) we get ready, unacked and consumers;
without it a passive declare gives ready and consumers, and unacked is unknown (None).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import httpx
import pika

from shared.messaging.names import Pool, dead_letter_queue, queue_name


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    ready: int
    unacked: int | None
    consumers: int


def conveyor_queues() -> list[str]:
    work = [queue_name(p) for p in Pool]
    return work + [dead_letter_queue(q) for q in work]


def queue_depths(broker_url: str, api_url: str | None = None) -> list[QueueDepth]:
    if api_url:
        return _from_management_api(api_url, _vhost(broker_url))
    return _from_passive_declare(broker_url)


def _vhost(broker_url: str) -> str:
    path = urlsplit(broker_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _from_management_api(api_url: str, vhost: str) -> list[QueueDepth]:
    parts = urlsplit(api_url)
    auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
    base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}"
    wanted = set(conveyor_queues())
    response = httpx.get(f"{base}/api/queues/{quote(vhost, safe='')}", auth=auth, timeout=5)
    response.raise_for_status()
    rows = [q for q in response.json() if q["name"] in wanted]
    return sorted(
        (
            QueueDepth(
                q["name"],
                int(q.get("messages_ready", 0)),
                int(q.get("messages_unacknowledged", 0)),
                int(q.get("consumers", 0)),
            )
            for q in rows
        ),
        key=lambda d: d.queue,
    )


def _from_passive_declare(broker_url: str) -> list[QueueDepth]:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        depths = []
        for name in conveyor_queues():
            channel = connection.channel()
            try:
                ok = channel.queue_declare(name, passive=True).method
            except pika.exceptions.ChannelClosedByBroker:
                continue  # not declared yet
            depths.append(QueueDepth(name, ok.message_count, None, ok.consumer_count))
            channel.close()
        return depths
    finally:
        connection.close()
