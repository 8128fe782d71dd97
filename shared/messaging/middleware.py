"""Worker-process lifecycle: fresh DB pool after fork, and the heartbeat thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Middleware

from shared.db.engine import session_scope
from shared.db.repos import jobs as jobs_repo
from shared.jobs.runner import RunnerDeps

log = structlog.get_logger("messaging")


class Heartbeats(Middleware):
    """Every `interval_s`, mark this process's running jobs alive so the reaper leaves them be."""

    def __init__(self, deps: Callable[[], RunnerDeps], interval_s: float) -> None:
        self._deps = deps
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="heartbeats", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            deps = self._deps()
            owned = deps.running.snapshot()
            if not owned:
                continue
            try:
                with session_scope(deps.sessions) as session:
                    jobs_repo.heartbeat(session, owned)
            except Exception:
                log.warning("messaging.heartbeat_failed", exc_info=True)
