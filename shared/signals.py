"""Stop signals (SIGTERM, SIGINT) turned into a `threading.Event`, without a deadlock.

Python runs a signal handler in the main thread between two bytecodes, wherever that thread
is, even inside another handler. A handler that calls `event.set()` takes the Event's lock;
if the code it interrupted holds that lock (the main thread inside `event.wait()`, or a first
handler inside `event.set()` when a second signal arrives), the process waits on itself
forever. Reproduced: two SIGTERMs a fraction of a millisecond apart (a `kill` of the process
group plus the supervisor passing it on) hung 42 of 1,500 processes waiting on an Event
(tests/unit/test_signals.py). So the handler here only records the signal, and a thread of
its own sets the Event.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType

# How often the watcher looks for a recorded signal: the stop's added latency.
POLL_S = 0.05

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(
    event: threading.Event, signals: Iterable[signal.Signals] = STOP_SIGNALS
) -> Callable[[], None]:
    """Set `event` (within POLL_S) once any of `signals` arrives. Call from the main thread.
    Returns a function that puts the previous handlers back and ends the watcher."""
    received: list[int] = []

    def record(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)  # no lock: see the module's docstring

    previous = {sig: signal.signal(sig, record) for sig in signals}
    done = threading.Event()  # only ever set outside a signal handler

    def watch() -> None:
        while not received and not done.is_set() and not event.is_set():
            time.sleep(POLL_S)
        if received:
            event.set()

    threading.Thread(target=watch, name="stop-signals", daemon=True).start()

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        done.set()

    return restore
