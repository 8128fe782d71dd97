"""Stop signals never deadlock the process that waits for them (shared/signals.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 600

# Waits on an Event as the worker process, the supervisor and the scheduler do; each round
# is one stop. The no-op handler first: a signal late for its round must not kill the child.
CHILD = f"""
import signal, threading
import shared.signals as signals
signals.POLL_S = 0.001
signal.signal(signal.SIGTERM, lambda *_: None)
for _ in range({ROUNDS}):
    stop = threading.Event()
    restore = signals.stop_on_signals(stop, [signal.SIGTERM])
    print("ready", flush=True)
    stop.wait()
    restore()
    print("stopped", flush=True)
"""


def test_two_sigterms_at_once_stop_a_waiting_process_every_time() -> None:
    """Two SIGTERMs a fraction of a millisecond apart, as a process-group kill plus the
    supervisor passing it on deliver them, in each of 600 rounds. Broken on purpose once (the
    handler calling `stop.set()` itself): the child hung in round 2."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    watchdog = threading.Timer(60, child.kill)  # a hung child: readline() returns ""
    watchdog.start()
    gaps = random.Random(0)
    try:
        for round_ in range(ROUNDS):
            assert child.stdout.readline() == "ready\n", f"round {round_}: child gone"
            os.kill(child.pid, signal.SIGTERM)
            _spin(gaps.uniform(0, 0.0004))
            os.kill(child.pid, signal.SIGTERM)
            assert child.stdout.readline() == "stopped\n", f"hung in round {round_}"
        assert child.wait(10) == 0
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()


def _spin(seconds: float) -> None:
    """Sub-millisecond gaps: `time.sleep` would round them up to a scheduler tick."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
