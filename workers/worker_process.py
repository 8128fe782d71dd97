"""One worker process: a Dramatiq Worker on one pool's queue, until SIGTERM or SIGINT.

`conveyor worker` (workers/supervisor.py) runs several of these and replaces any that dies.
"""

from __future__ import annotations

import argparse
import signal
import threading

import dramatiq
import structlog

log = structlog.get_logger("worker")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.worker_process")
    parser.add_argument("--queue", required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--grace-s", type=float, default=30.0)
    args = parser.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    from workers.main import build_worker_broker

    broker = build_worker_broker()
    broker.emit_after("process_boot")  # as Dramatiq's CLI does; starts the time-limit timer
    worker = dramatiq.Worker(broker, queues={args.queue}, worker_threads=args.threads)
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
