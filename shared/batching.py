"""Batches from a queue of requests: the group-commit writer's claims and successes
(shared/jobs/state_writer.py) and the submit hand-off's deletes (shared/messaging/handoff.py)."""

from __future__ import annotations

import queue
import time
from typing import TypeVar

_T = TypeVar("_T")


def gather(requests: queue.Queue[_T], max_batch: int, window_s: float) -> list[_T]:
    """The next batch: wait for one request, take what else is waiting, and keep taking for
    up to `window_s` after the first while the batch is not full."""
    batch = [requests.get()]
    deadline = time.monotonic() + window_s
    while len(batch) < max_batch:
        left = deadline - time.monotonic()
        try:
            batch.append(requests.get(timeout=left) if left > 0 else requests.get_nowait())
        except queue.Empty:
            break
    return batch
