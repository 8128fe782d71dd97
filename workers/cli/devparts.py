"""The parts `conveyor dev` runs: worker pools (RabbitMQ processes or the in-process broker),
the scheduler thread, and `Components`, which stops them all with one line each."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console

from shared.config import Settings


@dataclass
class Component:
    name: str
    stop: Callable[[], None]
    alive: Callable[[], bool] | None = None


@dataclass
class Components:
    """Started parts, stopped in reverse order; each stop prints its name and duration."""

    console: Console
    parts: list[Component] = field(default_factory=list)

    def add(
        self, name: str, stop: Callable[[], None], alive: Callable[[], bool] | None = None
    ) -> None:
        self.parts.append(Component(name, stop, alive))

    def all_alive(self) -> bool:
        return self.first_dead() is None

    def first_dead(self) -> str | None:
        return next((p.name for p in self.parts if p.alive is not None and not p.alive()), None)

    def stop_all(self) -> None:
        while self.parts:
            part = self.parts.pop()
            started = time.monotonic()
            try:
                part.stop()
            except Exception as exc:  # keep stopping the rest; say what failed
                self.console.print(f"  {part.name}: stop failed ({type(exc).__name__}: {exc})")
                continue
            self.console.print(f"  stopped {part.name} ({time.monotonic() - started:.1f}s)")


WORKER = [sys.executable, "-m", "workers.cli", "worker", "--processes", "1", "--metrics-port", "0"]


def active_pools() -> list[str]:
    """Pools that serve at least one registered kind: no idle processes, no 0-consumer gauges."""
    from shared.jobs.catalog import all_specs

    return sorted({spec.pool.value for spec in all_specs()})


def start_rabbitmq_workers(
    components: Components, settings: Settings, pools: list[str], threads: int
) -> None:
    from workers.cli.run import declare_broker_topology

    assert settings.broker_url
    declare_broker_topology(settings.broker_url)
    processes = [
        subprocess.Popen([*WORKER, "--pool", pool, "--threads", str(threads)]) for pool in pools
    ]

    def stop() -> None:
        for process in processes:  # all at once: shutdowns overlap instead of adding up
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()

    def alive() -> bool:
        return all(p.poll() is None for p in processes)

    components.add(f"workers ({', '.join(pools)})", stop, alive)
    start_scheduler_thread(components, settings, None)


def start_stub(components: Components, settings: Settings, pools: list[str], threads: int) -> None:
    import dramatiq

    from shared.db.engine import database_reachable
    from shared.messaging.actors import declare_actors
    from shared.messaging.broker import make_broker
    from shared.messaging.middleware import Heartbeats
    from shared.runtime import get_runtime
    from workers.registry import import_actor_modules

    broker = make_broker(
        None,
        extra_middleware=[Heartbeats(lambda: get_runtime().runner, settings.heartbeat_interval_s)],
        database_probe=lambda: database_reachable(get_runtime().engine),
    )
    import_actor_modules()
    declare_actors(broker, lambda: get_runtime().runner)
    for pool in pools:
        broker.declare_queue(f"conveyor.{pool}")
    broker.emit_after("process_boot")  # as Dramatiq's CLI does; starts the time-limit timer
    worker = dramatiq.Worker(broker, worker_threads=threads * len(pools), worker_timeout=100)
    worker.start()
    components.add(f"in-process workers ({', '.join(pools)})", worker.stop)
    start_scheduler_thread(components, settings, broker)


def start_scheduler_thread(components: Components, settings: Settings, stub: object) -> None:
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

    components.add("scheduler", stop, thread.is_alive)
