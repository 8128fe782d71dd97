"""Worker entry point: what `dramatiq workers.main` imports in every worker process."""

from __future__ import annotations

import dramatiq

from shared.config import get_settings
from shared.db.engine import database_reachable
from shared.logging import configure_logging
from shared.messaging.actors import declare_actors
from shared.messaging.broker import make_broker
from shared.messaging.middleware import Heartbeats
from shared.runtime import freeze_startup_heap, get_runtime
from workers.registry import import_actor_modules


def build_worker_broker() -> dramatiq.Broker:
    settings = get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    broker = make_broker(
        settings.broker_url,
        extra_middleware=[Heartbeats(lambda: get_runtime().runner, settings.heartbeat_interval_s)],
        database_probe=lambda: database_reachable(get_runtime().engine),
        wire_auth=settings.wire_auth(),
    )
    import_actor_modules()
    declare_actors(broker, lambda: get_runtime().runner)
    return broker


broker = build_worker_broker()
freeze_startup_heap()  # actors, broker and modules are loaded; the threads start next
