"""One worker process: a Dramatiq Worker on one pool's queue, until SIGTERM or SIGINT.

`conveyor worker` (workers/supervisor.py) runs several of these and replaces any that dies.
"""

from __future__ import annotations

import argparse
import threading

import dramatiq
import structlog

from shared.signals import stop_on_signals

log = structlog.get_logger("worker")

# How often an idle worker or consumer thread wakes to look at its stop flag (Dramatiq's
# `worker_timeout`, 1,000 ms by default): a stop waits for one such wake-up of the worker
# threads and then one of the consumer, ~2 s at the default, ~0.5 s at 200 ms. The cost is a
# few dozen idle wake-ups a second per process; a busy thread never waits on it.
IDLE_WAKE_MS = 200


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.worker_process")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--grace-s", type=float, default=30.0)
    args = parser.parse_args(argv)

    stop = threading.Event()
    stop_on_signals(stop)

    from workers.main import build_worker_broker

    broker = build_worker_broker()
    broker.emit_after("process_boot")  # as Dramatiq's CLI does; starts the time-limit timer
    worker = dramatiq.Worker(
        broker, queues={args.queue}, worker_threads=args.threads, worker_timeout=IDLE_WAKE_MS
    )
    worker.start()
    log.info("worker.process_started", queue=args.queue, threads=args.threads)
    stop.wait()
    log.info("worker.process_stopping", grace_s=args.grace_s)
    # In-flight jobs finish within the grace period; prefetched deliveries go back to
    # RabbitMQ when the connection closes.
    worker.stop(timeout=int(args.grace_s * 1000))
    broker.close()


if __name__ == "__main__":
    main()
