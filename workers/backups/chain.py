"""Chain planning: which backups a restore point needs, and which retention may drop."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from workers.backups.chunks import BackupCorrupt
from workers.backups.manifest import Manifest


@dataclass(frozen=True)
class Node:
    id: uuid.UUID
    parent_id: uuid.UUID | None
    created_at: datetime
    completed: bool


class ChainBroken(BackupCorrupt):
    code = "backup_chain_broken"


def restore_chain(target: uuid.UUID, nodes: Mapping[uuid.UUID, Node]) -> list[uuid.UUID]:
    """The full backup and every incremental up to `target`, oldest first."""
    chain: list[uuid.UUID] = []
    current: uuid.UUID | None = target
    while current is not None:
        node = nodes.get(current)
        if node is None or not node.completed:
            raise ChainBroken(f"backup {current} of the chain is missing or not completed")
        if current in chain:
            raise ChainBroken(f"backup {current} appears twice in its own chain")
        chain.append(current)
        current = node.parent_id
    return chain[::-1]


def verify_chain(manifests: Sequence[Manifest], user_id: uuid.UUID) -> None:
    """Each manifest names its parent by id and digest, covers the same user and data types,
    and starts where its parent's high-water mark ended."""
    first = manifests[0]
    if first.type != "full" or first.parent_id is not None:
        raise ChainBroken(f"backup {first.backup_id} should be a full backup")
    for parent, child in itertools.pairwise(manifests):
        if child.parent_id != parent.backup_id or child.parent_digest != parent.digest():
            raise ChainBroken(f"backup {child.backup_id} does not follow {parent.backup_id}")
        if child.since != parent.high_water_mark or child.data_types != parent.data_types:
            raise ChainBroken(f"backup {child.backup_id} does not continue its parent's range")
    for manifest in manifests:
        if manifest.user_id != user_id:
            raise ChainBroken(f"backup {manifest.backup_id} belongs to another user")


def descendants(root: uuid.UUID, nodes: Mapping[uuid.UUID, Node]) -> list[uuid.UUID]:
    """Every backup whose chain goes through `root`, children before their parents."""
    children: dict[uuid.UUID, list[uuid.UUID]] = {}
    for node in nodes.values():
        if node.parent_id is not None:
            children.setdefault(node.parent_id, []).append(node.id)
    order: list[uuid.UUID] = []
    stack = [root]
    while stack:
        current = stack.pop()
        order.append(current)
        stack.extend(children.get(current, []))
    return order[::-1]


def prunable(nodes: Mapping[uuid.UUID, Node], keep_last: int) -> list[uuid.UUID]:
    """Completed backups outside the newest `keep_last` restore points and their chains,
    children before parents (so deleting in order never strands an incremental)."""
    completed = sorted(
        (n for n in nodes.values() if n.completed), key=lambda n: n.created_at, reverse=True
    )
    needed: set[uuid.UUID] = set()
    for node in completed[:keep_last]:
        needed.update(restore_chain(node.id, nodes))
    # Pending backups may become children of anything: keep their future parents too.
    for node in nodes.values():
        if not node.completed and node.parent_id is not None:
            needed.update(restore_chain(node.parent_id, nodes))
    doomed = [n for n in completed if n.id not in needed]
    return [n.id for n in sorted(doomed, key=lambda n: n.created_at, reverse=True)]
