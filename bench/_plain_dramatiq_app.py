"""Worker module for the plain-Dramatiq baseline (``dramatiq bench._plain_dramatiq_app``).

The broker is a stock :class:`RabbitmqBroker` with Dramatiq's default middleware
(AgeLimit, TimeLimit, ShutdownNotifications, Callbacks, Pipelines, Retries).  In
dramatiq 2.x the Prometheus middleware is *not* part of the defaults, so no HTTP port
is bound.  The AMQP URL (with the per-run vhost) comes from ``BENCH_AMQP_URL``.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench._completion import AMQP_URL_ENV, mark_done

QUEUE_NAME = "default"
ACTOR_NAME = "bench_noop"

broker = RabbitmqBroker(url=os.environ.get(AMQP_URL_ENV, "amqp://guest:guest@127.0.0.1:5672/"))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name=ACTOR_NAME, queue_name=QUEUE_NAME, max_retries=0)
def bench_noop(job_id: int) -> None:
    mark_done(job_id)
