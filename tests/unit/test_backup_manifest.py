"""Sealed manifests (MAC, key wrapping, rotation) and chain planning (restore, retention)."""

from __future__ import annotations

import base64
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.crypto import KeyRing
from workers.backups.chain import (
    ChainBroken,
    Node,
    descendants,
    prunable,
    restore_chain,
    verify_chain,
)
from workers.backups.chunks import BackupCorrupt
from workers.backups.manifest import BackupKeyError, Manifest, open_document, rewrap, seal

USER = uuid.uuid4()


def ring(*kids: str) -> KeyRing:
    return KeyRing.parse(",".join(f"{k}:{base64.b64encode(os.urandom(32)).decode()}" for k in kids))


def manifest(parent: Manifest | None = None, **changes: Any) -> Manifest:
    fields: dict[str, Any] = {
        "backup_id": uuid.uuid4(),
        "user_id": USER,
        "type": "incremental" if parent else "full",
        "data_types": ["messages"],
        "parent_id": parent.backup_id if parent else None,
        "parent_digest": parent.digest() if parent else None,
        "since": parent.high_water_mark if parent else None,
        "high_water_mark": datetime.now(UTC).isoformat(),
        "created_at": datetime.now(UTC).isoformat(),
        "chunk_size": 1024,
        "object_bytes": 0,
        "segments": [],
    }
    return Manifest(**{**fields, **changes})


def test_sealed_manifest_opens_with_its_key_and_never_carries_it_in_clear() -> None:
    keys, data_key, m = ring("a"), os.urandom(32), manifest()
    document = seal(m, data_key, keys)
    assert base64.b64encode(data_key).decode() not in str(document)
    assert open_document(document, keys) == (m, data_key)


@pytest.mark.parametrize("field", ["type", "high_water_mark", "user_id"])
def test_any_edit_to_a_manifest_is_detected(field: str) -> None:
    keys = ring("a")
    document = seal(manifest(), os.urandom(32), keys)
    document["manifest"][field] = {"type": "incremental", "user_id": str(uuid.uuid4())}.get(
        field, "x"
    )
    with pytest.raises(BackupCorrupt, match="authentication"):
        open_document(document, keys)


def test_wrong_or_missing_master_key_is_refused() -> None:
    document = seal(manifest(), os.urandom(32), ring("a"))
    for other in (ring("a"), ring("b")):
        with pytest.raises(BackupKeyError):
            open_document(document, other)


def test_rotation_keeps_old_backups_readable_and_rewrap_moves_them() -> None:
    old = ring("a")
    m, data_key = manifest(), os.urandom(32)
    document = seal(m, data_key, old)
    rotated = KeyRing((ring("b").keys[0], old.keys[0]))
    assert open_document(document, rotated)[1] == data_key
    moved = rewrap(document, rotated)
    assert moved["key"]["kid"] == "b" and moved["mac"] == document["mac"]
    assert open_document(moved, KeyRing((rotated.keys[0],))) == (m, data_key)


def test_a_chain_must_link_by_id_digest_range_and_user() -> None:
    full = manifest()
    first = manifest(full)
    second = manifest(first)
    verify_chain([full, first, second], USER)
    with pytest.raises(ChainBroken):
        verify_chain([full, second], USER)
    with pytest.raises(ChainBroken):
        verify_chain([full, manifest(full, parent_digest="0" * 64)], USER)
    with pytest.raises(ChainBroken):
        verify_chain([full, manifest(full, since="2000-01-01T00:00:00+00:00")], USER)
    with pytest.raises(ChainBroken):
        verify_chain([full, first], uuid.uuid4())
    with pytest.raises(ChainBroken):
        verify_chain([first], USER)


def nodes(
    *spec: tuple[str, str | None, bool],
) -> tuple[dict[uuid.UUID, Node], dict[str, uuid.UUID]]:
    ids = {name: uuid.uuid4() for name, _, _ in spec}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    out = {
        ids[name]: Node(
            ids[name], ids[parent] if parent else None, start + timedelta(hours=i), done
        )
        for i, (name, parent, done) in enumerate(spec)
    }
    return out, ids


def test_restore_chain_walks_back_to_the_full_backup() -> None:
    graph, ids = nodes(("f", None, True), ("i1", "f", True), ("i2", "i1", True), ("p", "i2", False))
    assert restore_chain(ids["i2"], graph) == [ids["f"], ids["i1"], ids["i2"]]
    with pytest.raises(ChainBroken):
        restore_chain(ids["p"], graph)


def test_retention_never_strands_an_incremental() -> None:
    graph, ids = nodes(
        ("f1", None, True),
        ("a", "f1", True),
        ("f2", None, True),
        ("b", "f2", True),
        ("c", "b", True),
    )
    # Keep the 2 newest points (c, b): they need f2; f1 and a go, child first.
    assert prunable(graph, 2) == [ids["a"], ids["f1"]]
    # Keep only a's point... the newest is c, which needs b and f2.
    assert set(prunable(graph, 1)) == {ids["a"], ids["f1"]}
    assert prunable(graph, 5) == []
    assert descendants(ids["f2"], graph)[-1] == ids["f2"]
    assert set(descendants(ids["f2"], graph)) == {ids["f2"], ids["b"], ids["c"]}
