"""`conveyor worker`: keep N worker processes alive.

Dramatiq's own CLI stops the whole pool when one child dies; here a child that exits
unexpectedly (SIGKILL, OOM, a crash) is replaced, with a crash-loop backoff per slot that
doubles while children die young and resets once one has lived `healthy_after_s`.
SIGTERM/SIGINT are passed to the children, which finish in-flight jobs within the grace
period; whatever is still alive after it is killed (its deliveries return to RabbitMQ).
With a probe port, `/readyz` answers 503 from the moment SIGTERM arrives (and while no child
runs), `/healthz` while the supervising loop turns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from shared.probes import Liveness, ProbeServer
from shared.signals import stop_on_signals

log = structlog.get_logger("worker")


@dataclass
class _Slot:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float = 0.0
    backoff_s: float = 0.0


class Supervisor:
    def __init__(
        self,
        command: list[str],
        processes: int,
        *,
        grace_s: float = 30.0,
        min_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        healthy_after_s: float = 60.0,
        on_exit: Callable[[int], None] | None = None,
        probe_port: int | None = None,
    ) -> None:
        self._command = command
        self._slots = [_Slot(i) for i in range(processes)]
        self._grace_s = grace_s
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._healthy_after_s = healthy_after_s
        self._on_exit = on_exit
        self.stop_event = threading.Event()
        self.restarts = 0
        self._probe_port = probe_port
        self._liveness = Liveness()

    def ready(self) -> bool:
        """Takes deliveries: not stopping, and at least one child is running."""
        if self.stop_event.is_set():
            return False
        return any(s.process is not None and s.process.poll() is None for s in self._slots)

    def run(self) -> None:
        stop_on_signals(self.stop_event)
        probes = self._start_probes()
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                for slot in self._slots:
                    self._tend(slot, now)
                self._liveness.beat()
                self.stop_event.wait(0.2)
        finally:
            self._stop_all()
            if probes is not None:
                probes.close()

    def _start_probes(self) -> ProbeServer | None:
        port = self._probe_port
        if port is None:  # `conveyor worker` does not pass one: the setting decides
            from shared.config import get_settings

            port = get_settings().probe_port
        if not port:
            return None
        # While stopping the loop waits on children, not turning: still alive.
        return ProbeServer(
            port,
            alive=lambda: self.stop_event.is_set() or self._liveness.alive(),
            ready=self.ready,
            registry=None,
        ).start()

    def _tend(self, slot: _Slot, now: float) -> None:
        if slot.process is None:
            if now >= slot.restart_at:
                self._start(slot, now)
            return
        code = slot.process.poll()
        if code is None:
            return
        pid = slot.process.pid
        slot.process = None
        if self._on_exit is not None:
            self._on_exit(pid)
        lived = now - slot.started
        if lived >= self._healthy_after_s:
            slot.backoff_s = 0.0
        slot.backoff_s = min(self._max_backoff_s, max(self._min_backoff_s, slot.backoff_s * 2))
        slot.restart_at = now + slot.backoff_s
        self.restarts += 1
        log.warning(
            "worker.child_exited",
            slot=slot.index,
            pid=pid,
            code=code,
            lived_s=round(lived, 1),
            restart_in_s=slot.backoff_s,
        )

    def _start(self, slot: _Slot, now: float) -> None:
        slot.process = subprocess.Popen(self._command)
        slot.started = now
        log.info("worker.child_started", slot=slot.index, pid=slot.process.pid)

    def _stop_all(self) -> None:
        running = [s.process for s in self._slots if s.process is not None]
        for process in running:
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + self._grace_s + 5
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker.child_killed", pid=process.pid, detail="grace period over")
                _signal(process, signal.SIGKILL)
                process.wait(10)


def _signal(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
        os.kill(process.pid, sig)
