"""No delivery is ever acknowledged unhandled.

Dramatiq acknowledges a message whose actor raised unless a middleware marks it failed (we
do not install its Retries middleware: retries live in PostgreSQL). `DeliveryGuard` decides
instead, for anything that escapes the runner:

- the database is unreachable, or the worker is stopping (Dramatiq's `Shutdown`, a time
  limit outside the handler): the message is **requeued** (`basic_nack(requeue=True)`) and
  the process **stops taking deliveries** — every worker thread waits in
  `before_process_message` until a probe reaches the database again — then resumes;
- a message found unusable only once the runner looked at the database (`InvalidMessage`,
  e.g. `job_mismatch`: its job id names another tenant's or kind's job) is dead-lettered
  with the error's code as the reason;
- anything else (a bug, bad data the code did not expect): the message is **dead-lettered**
  with reason `unhandled_error` and the exception as detail, then acknowledged. If even the
  dead-letter publish fails, it is nacked without requeue, so RabbitMQ's own dead-lettering
  moves it to the same queue (reason `nacked`).

Runner outcomes (succeeded, retry, failed, dead, skipped) return normally and are acked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import dramatiq
import structlog
from dramatiq.middleware import Interrupt, Middleware

from shared.db.engine import is_unreachable
from shared.errors import InvalidMessage

log = structlog.get_logger("messaging")

REQUEUE_OPTION = "conveyor_requeue"

# (message, reason, detail) → True when the dead letter is safely stored.
DeadLetterer = Callable[[Any, str, str], bool]


class DatabaseGate:
    """Open while the database answers; closed, every caller waits until a probe succeeds."""

    def __init__(self, probe: Callable[[], bool], *, interval_s: float = 0.5) -> None:
        self._probe = probe
        self._interval_s = interval_s
        self._open = threading.Event()
        self._open.set()
        self._probing = threading.Lock()
        self._stopping = False

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def close(self) -> None:
        if self._open.is_set():
            log.warning("messaging.database_unreachable", detail="pausing deliveries")
        self._open.clear()

    def stop_waiting(self) -> None:
        """The worker is stopping: waiting deliveries go on (and are requeued if they fail)."""
        self._stopping = True
        self._open.set()

    def wait_open(self) -> None:
        while not self._open.is_set() and not self._stopping:
            if not self._probing.acquire(blocking=False):
                self._open.wait(self._interval_s)  # another thread is probing
                continue
            try:
                if self._probe():
                    self._open.set()
                    log.info("messaging.database_back", detail="resuming deliveries")
                else:
                    self._open.wait(self._interval_s)
            finally:
                self._probing.release()


class DeliveryGuard(Middleware):
    """Install first, so deliveries wait for the database before a time limit starts."""

    def __init__(self, gate: DatabaseGate, dead_letter: DeadLetterer) -> None:
        self.gate = gate
        self._dead_letter = dead_letter

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.gate.wait_open()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.gate.stop_waiting()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            return
        if is_unreachable(exception):
            self.gate.close()
            self._requeue(message, "database_unreachable")
        elif isinstance(exception, Interrupt):  # Shutdown, or a time limit outside the handler
            self._requeue(message, type(exception).__name__)
        elif isinstance(exception, InvalidMessage):
            self._store(message, exception.code, exception.message[:1000])
        else:
            self._store(
                message, "unhandled_error", f"{type(exception).__name__}: {exception}"[:1000]
            )

    def _store(self, message: Any, reason: str, detail: str) -> None:
        if self._dead_letter(message, reason, detail):
            log.error("messaging.dead_lettered", reason=reason, detail=detail)
        else:
            message.fail()
            log.error("messaging.nacked", reason=reason, detail=detail)

    @staticmethod
    def _requeue(message: Any, why: str) -> None:
        message.options[REQUEUE_OPTION] = True
        message.fail()
        log.warning("messaging.requeued", reason=why, actor=message.actor_name)
