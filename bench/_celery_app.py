"""Celery app for the Celery baseline (``celery -A bench._celery_app worker -P threads``).

No result backend, results ignored, remote control (pidbox), gossip, mingle and event
heartbeats disabled so that the worker only talks to the task queue.  Everything else
(prefetch multiplier 4, early ack, persistent delivery, json, no publisher confirms)
is left at Celery's defaults.  The broker URL comes from ``BENCH_AMQP_URL``.
"""

from __future__ import annotations

import os

from celery import Celery

from bench._completion import AMQP_URL_ENV, mark_done

QUEUE_NAME = "celery"
TASK_NAME = "bench.noop"


def make_app(broker_url: str | None) -> Celery:
    app = Celery("bench", broker=broker_url, backend=None, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,
        task_default_queue=QUEUE_NAME,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return app


app = make_app(os.environ.get(AMQP_URL_ENV, "amqp://guest:guest@127.0.0.1:5672//"))


@app.task(name=TASK_NAME, ignore_result=True)  # type: ignore[untyped-decorator]
def noop(job_id: int) -> None:
    mark_done(job_id)
