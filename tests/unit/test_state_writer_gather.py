"""How the group-commit writer forms a batch (`gather`): what waits is taken, a busy writer
waits a short window for more, and nothing makes a lone request wait when the window is 0."""

from __future__ import annotations

import queue
import threading

from shared.batching import gather


def filled(*items: int) -> queue.Queue[int]:
    q: queue.Queue[int] = queue.Queue()
    for item in items:
        q.put(item)
    return q


def test_everything_waiting_joins_the_batch_up_to_its_limit() -> None:
    q = filled(1, 2, 3, 4, 5)
    assert gather(q, max_batch=3, window_s=0.0) == [1, 2, 3]
    assert gather(q, max_batch=3, window_s=0.0) == [4, 5]


def test_without_a_window_a_lone_request_is_written_at_once() -> None:
    # Were it to wait for a second request, this would block until the suite's timeout.
    assert gather(filled(1), max_batch=128, window_s=0.0) == [1]


def test_a_request_arriving_within_the_window_joins_the_batch() -> None:
    """A window far longer than the test: the batch is complete when the second request
    arrives (max_batch 2), so the result does not depend on how fast this machine is."""
    q = filled(1)
    result: list[list[int]] = []
    gathering = threading.Thread(target=lambda: result.append(gather(q, 2, window_s=60.0)))
    gathering.start()
    q.put(2)
    gathering.join(timeout=30)
    assert result == [[1, 2]]


def test_the_window_ends_the_batch_when_nothing_more_comes() -> None:
    q = filled(1)
    assert gather(q, max_batch=128, window_s=0.01) == [1]
    q.put(2)
    assert gather(q, max_batch=128, window_s=0.0) == [2]  # the late one starts the next batch
