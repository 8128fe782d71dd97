"""`backup.restore`: verify a chain completely, then apply it in one transaction.

1. The chain (full → … → the chosen point) comes from the `backups` rows; each manifest is
   read from S3, its data key unwrapped with the key ring, its MAC checked, its digest
   compared with the row's, and the manifests' parent links, ranges and user checked.
2. Every object is read and verified (every chunk tag, every segment's hash, length and
   row count) before a single row changes.
3. The chain is read again into temporary tables and applied per table with set-based,
   idempotent upserts (later chain elements win) in one transaction: a crash rolls it all
   back and the redelivered job ends in the same state. `dry_run` rolls back on purpose.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import structlog
from sqlalchemy.orm import Session

from shared.db.models import Backup
from shared.db.repos import backup_data as data_repo
from shared.db.repos import backups as backups_repo
from shared.errors import PermanentError
from shared.jobs.context import JobContext
from shared.storage.base import ObjectNotFound
from workers.backups.chain import ChainBroken, Node, restore_chain, verify_chain
from workers.backups.chunks import BackupCorrupt
from workers.backups.manifest import Manifest, chunk_key, open_document
from workers.backups.pipeline import open_table
from workers.backups.service import BackupDeps, Progress, lock_user, table_refs

log = structlog.get_logger("backups")


@dataclass(frozen=True)
class Link:
    row: Backup
    manifest: Manifest
    key: bytes  # the chunk key (derived from the data key; never logged or returned)


def restore_backup(
    ctx: JobContext,
    session: Session,
    deps: BackupDeps,
    *,
    backup_id: uuid.UUID,
    mode: str,
    dry_run: bool,
) -> dict[str, Any]:
    target = backups_repo.get(session, backup_id)
    # A backup restores only into its own user; another user's is "not found" (not revealed).
    if target is None or str(target.user_id) != ctx.user_id:
        raise PermanentError("no such backup", code="not_found", backup_id=backup_id)
    if target.status != "completed":
        raise PermanentError("the backup is not completed", code="backup_not_completed")
    lock_user(session, target.user_id)
    chain = load_chain(session, deps, target)
    rows = sum(s.rows for link in chain for s in link.manifest.segments)
    progress = Progress(ctx, 2 * rows, "verified")  # every row is read twice: verify, apply
    for link in chain:
        for _ in _batches(deps, link, progress):
            pass
    progress.verb = "restored"
    # Rows go to the backup's (= the job's) tenant, whatever tenant_id the rows carry, if any.
    tables = _apply(
        deps, chain, target.user_id, target.tenant_id, mode=mode, dry_run=dry_run, progress=progress
    )
    log.info("backups.restored", backup_id=str(backup_id), mode=mode, dry_run=dry_run)
    return {
        "backup_id": str(backup_id),
        "mode": mode,
        "dry_run": dry_run,
        "chain": [str(link.row.id) for link in chain],
        "tables": tables,
    }


def load_chain(session: Session, deps: BackupDeps, target: Backup) -> list[Link]:
    rows = {b.id: b for b in backups_repo.of_user(session, target.user_id, limit=100_000)}
    nodes = {
        b.id: Node(b.id, b.parent_id, b.created_at, b.status == "completed") for b in rows.values()
    }
    chain: list[Link] = []
    for backup_id in restore_chain(target.id, nodes):
        row = rows[backup_id]
        assert row.manifest_key is not None
        manifest, data_key = open_document(_document(deps, row.manifest_key), deps.keys)
        if manifest.backup_id != row.id or manifest.digest() != row.manifest_digest:
            raise ChainBroken(f"the manifest in storage is not the one backup {row.id} recorded")
        chain.append(Link(row, manifest, chunk_key(data_key)))
    verify_chain([link.manifest for link in chain], target.user_id)
    return chain


def _document(deps: BackupDeps, key: str) -> dict[str, Any]:
    try:
        document = json.loads(deps.store.get_bytes(deps.bucket, key))
    except ObjectNotFound:
        raise BackupCorrupt(f"the manifest {key} is missing from storage") from None
    except ValueError:
        raise BackupCorrupt(f"the manifest {key} is not JSON") from None
    if not isinstance(document, dict):
        raise BackupCorrupt(f"the manifest {key} is not a JSON object")
    return document


def _batches(
    deps: BackupDeps, link: Link, progress: Progress
) -> Iterator[tuple[str, pa.RecordBatch]]:
    assert link.row.object_key is not None
    try:
        size = deps.store.stat(deps.bucket, link.row.object_key).size
    except ObjectNotFound:
        raise BackupCorrupt(f"the data object of backup {link.row.id} is missing") from None
    if size != link.manifest.object_bytes:
        raise BackupCorrupt(
            f"backup {link.row.id} is {size} bytes, its manifest says {link.manifest.object_bytes}"
        )
    for index, segment in enumerate(link.manifest.segments):
        pieces = deps.store.iter_range(
            deps.bucket, link.row.object_key, offset=segment.offset, length=segment.length
        )
        batches = open_table(
            pieces,
            key=link.key,
            backup_id=link.manifest.backup_id,
            index=index,
            segment=segment,
            chunk_size=link.manifest.chunk_size,
        )
        for batch in batches:
            yield segment.table, batch
            progress.rows(segment.table, batch.num_rows, segment.offset)
        progress.rows(segment.table, 0, segment.offset + segment.length)


def _apply(
    deps: BackupDeps,
    chain: list[Link],
    user_id: uuid.UUID,
    tenant: str,
    *,
    mode: str,
    dry_run: bool,
    progress: Progress,
) -> dict[str, dict[str, int]]:
    refs = {ref.name: ref for ref in table_refs(chain[0].manifest.data_types)}
    counts: dict[str, dict[str, int]] = {}
    with data_repo.restore_transaction(deps.dsn, tenant=tenant, commit=not dry_run) as cursor:
        for ref in refs.values():
            data_repo.create_stage(cursor, ref)
        for seq, link in enumerate(chain):
            for table, batch in _batches(deps, link, progress):
                data_repo.stage_batch(cursor, refs[table], batch, seq)
        for ref in refs.values():
            if data_repo.foreign_rows(cursor, ref, user_id):
                raise PermanentError(
                    f"the backup holds {ref.name} rows of another user", code="wrong_user"
                )
        for ref in refs.values():
            applied = data_repo.apply(cursor, ref, user_id, replace=mode == "replace")
            counts[ref.name] = {
                "inserted": applied.inserted,
                "updated": applied.updated,
                "deleted": applied.deleted,
            }
    return counts
