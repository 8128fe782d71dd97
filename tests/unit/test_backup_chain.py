"""Property: whatever the history of fulls and incrementals, retention keeps the newest
`keep_last` restore points restorable and never leaves an incremental without its parent."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.storage.memory import MemoryStore
from workers.backups.chain import Node, prunable, restore_chain

START = datetime(2026, 1, 1, tzinfo=UTC)


def history(steps: list[bool]) -> dict[uuid.UUID, Node]:
    """True: a full backup; False: an incremental on the newest backup (a full if none)."""
    nodes: dict[uuid.UUID, Node] = {}
    newest: uuid.UUID | None = None
    for i, full in enumerate(steps):
        node = Node(uuid.uuid4(), None if full else newest, START + timedelta(minutes=i), True)
        nodes[node.id] = node
        newest = node.id
    return nodes


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40), st.integers(min_value=1, max_value=10))
def test_retention_keeps_chains_whole(steps: list[bool], keep_last: int) -> None:
    nodes = history(steps)
    doomed = prunable(nodes, keep_last)
    left = {k: v for k, v in nodes.items() if k not in doomed}
    newest = sorted(nodes.values(), key=lambda n: n.created_at, reverse=True)[:keep_last]
    for node in newest:
        assert node.id in left
    for node in left.values():
        restore_chain(node.id, left)  # raises if a parent was pruned
    # Deleting in the returned order never removes a parent before its child.
    gone: set[uuid.UUID] = set()
    for backup_id in doomed:
        assert not any(n.parent_id == backup_id and n.id not in gone for n in nodes.values())
        gone.add(backup_id)


def test_memory_store_streams_and_a_failed_stream_stores_nothing() -> None:
    store = MemoryStore()
    store.ensure_bucket("b")
    info = store.put_stream("b", "k", io.BytesIO(b"x" * 10_000), part_size=4096)
    assert info.size == 10_000
    assert b"".join(store.iter_range("b", "k", offset=100, length=50)) == b"x" * 50

    class Broken(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            raise OSError("source failed")

    with pytest.raises(OSError):
        store.put_stream("b", "other", Broken())  # type: ignore[arg-type]
    assert "other" not in store.buckets["b"]
