"""Long-running processes: migrate, ingress, worker, scheduler (and dev, in dev.py)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Callable
from typing import Annotated

import structlog
import typer

from shared.config import Settings, get_settings
from shared.logging import configure_logging
from shared.messaging.names import Pool, queue_name

log = structlog.get_logger("worker")


def register(app: typer.Typer) -> None:
    app.command()(migrate)
    app.command()(ingress)
    app.command()(worker)
    app.command()(scheduler)
    from workers.cli.dev import dev

    app.command()(dev)


def migrate() -> None:
    """Apply database migrations and declare the RabbitMQ topology (if a broker is set)."""
    from shared.db.migrations import upgrade_to_head

    settings = get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    upgrade_to_head(settings.require_database_url())
    if settings.broker_url:
        declare_broker_topology(settings.broker_url)
    if settings.s3_endpoint:
        expire_abandoned_uploads(settings)
    typer.echo("migrations applied")


def expire_abandoned_uploads(settings: Settings) -> None:
    """The incoming bucket's lifecycle rule: a backstop for the scheduler's sweep."""
    from minio.error import S3Error

    from shared.storage.buckets import Bucket, bucket_name
    from shared.storage.s3 import S3Store
    from workers.uploads.sweep import INCOMING_EXPIRY_DAYS, PREFIX

    store = S3Store.from_settings(settings)
    bucket = bucket_name(settings.bucket_prefix, Bucket.INCOMING)
    store.ensure_bucket(bucket)
    try:
        store.set_expiry(bucket, PREFIX, INCOMING_EXPIRY_DAYS)
    except S3Error as exc:  # a store without lifecycle support: the sweep still runs
        typer.echo(f"warning: no lifecycle rule on {bucket} ({exc.code})", err=True)


def declare_broker_topology(broker_url: str) -> None:
    from shared.jobs.catalog import all_specs
    from shared.messaging.broker import ConveyorRabbitmqBroker
    from shared.messaging.topology import declare_topology

    broker = ConveyorRabbitmqBroker(url=broker_url, max_priority=10, middleware=[])
    try:
        declare_topology(broker, all_specs())
    finally:
        broker.close()


def ingress(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="bind port")] = None,
) -> None:
    """Run the HTTP ingress (FastAPI on uvicorn)."""
    import uvicorn

    from workers.ingress.app import create_app

    settings = get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=host or settings.ingress_host,
        port=port or settings.ingress_port,
        log_level="warning",
    )


def worker(
    pool: Annotated[Pool, typer.Option(help="which pool's queue to consume")],
    processes: Annotated[int, typer.Option(min=1)] = 2,
    threads: Annotated[int, typer.Option(min=1)] = 8,
    metrics_port: Annotated[int, typer.Option(help="Prometheus port; 0 disables")] = 9191,
    metrics_host: Annotated[
        str,
        typer.Option(
            help="address the metrics port binds: loopback unless a scraper on another host "
            "needs it (Kubernetes: the pod IP; Compose: 0.0.0.0)",
            envvar="CONVEYOR_METRICS_HOST",
        ),
    ] = "127.0.0.1",
    grace_s: Annotated[
        float, typer.Option(help="on SIGTERM, how long in-flight jobs may take to finish")
    ] = 30.0,
) -> None:
    """Run a worker pool for one queue: N processes, each replaced if it dies."""
    from workers.supervisor import Supervisor

    settings = get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    if not settings.broker_url:
        raise typer.BadParameter("CONVEYOR_BROKER_URL is required (use `conveyor dev` without one)")
    settings.require_database_url()
    metrics_dir = _serve_multiprocess_metrics(metrics_port, metrics_host)
    queue = queue_name(pool)
    command = [
        sys.executable,
        "-m",
        "workers.worker_process",
        "--queue",
        queue,
        "--threads",
        str(threads),
        "--grace-s",
        str(grace_s),
    ]
    supervisor = Supervisor(
        command, processes, grace_s=grace_s, on_exit=_metrics_cleanup(metrics_dir)
    )
    log.info(
        "worker.pool_started", pool=pool.value, queue=queue, processes=processes, threads=threads
    )
    supervisor.run()
    log.info("worker.pool_stopped", pool=pool.value, restarts=supervisor.restarts)


def _metrics_cleanup(directory: str | None) -> Callable[[int], None] | None:
    """A dead child's live gauges must not linger in the pool's sum."""
    if directory is None:
        return None
    from prometheus_client import multiprocess

    return lambda pid: multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _serve_multiprocess_metrics(port: int, host: str) -> str | None:
    """Worker processes write metrics to a shared dir; this parent process serves the sum."""
    if port == 0:
        return None
    directory = os.environ.setdefault(
        "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="conveyor-metrics-")
    )
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)
    return directory


def scheduler() -> None:
    """Run the outbox relay, due/delayed jobs and the reaper (safe to run twice)."""
    from shared.db.engine import libpq_dsn, make_engine, make_session_factory
    from shared.messaging.publisher import AmqpPublisher
    from shared.runtime import freeze_startup_heap
    from shared.signals import stop_on_signals
    from workers.scheduler.service import Scheduler, SchedulerConfig

    settings = get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    if not settings.broker_url:
        raise typer.BadParameter("CONVEYOR_BROKER_URL is required")
    url = settings.require_database_url()
    declare_broker_topology(settings.broker_url)
    engine = make_engine(url, pool_size=2, application_name="conveyor-scheduler")
    publisher = AmqpPublisher(settings.broker_url)
    service = Scheduler(
        libpq_dsn(url),
        make_session_factory(engine),
        publisher,
        SchedulerConfig.from_settings(settings),
    )
    stop_on_signals(service.stop_event, [signal.SIGTERM])  # Ctrl-C: KeyboardInterrupt
    freeze_startup_heap()
    try:
        service.run()
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()
        engine.dispose()
