"""At most N image decodes at a time per process (default 1): a media worker's peak memory
is then about one decoded image (the pixel limit bounds it), not threads x one. Pure."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_configured = threading.Lock()
_slots = threading.BoundedSemaphore(1)
_size = 1


def set_decode_concurrency(n: int) -> None:
    """Resize the process-wide limit (idempotent; the worker calls it with its setting)."""
    global _slots, _size
    if n < 1:
        raise ValueError("decode concurrency must be >= 1")
    with _configured:
        if n != _size:
            _slots, _size = threading.BoundedSemaphore(n), n


@contextmanager
def decode_slot() -> Iterator[None]:
    """Hold one of the process's decode slots for as long as decoded pixels are alive."""
    slots = _slots
    with slots:
        yield
