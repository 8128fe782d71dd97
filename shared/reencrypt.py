"""`conveyor keys reencrypt`: move every ciphertext to the current key and the v2 format.

Columns are listed in shared/db/repos/encrypted.py; backup data keys (wrapped in manifests
in S3) are re-wrapped by workers/backups/rewrap.py, which `keys reencrypt` runs too.
Each batch is one transaction: decrypt with whichever ring key it names (v1 or v2), seal
with the current key as v2, write. v1 values are read only while the ring accepts them
(CONVEYOR_CRYPTO_ACCEPT_V1, default true): once that is false they fail here too, so a
value that was swapped into the wrong column is never laundered into v2 after the operator
declared v1 finished; `v1_left` counts what is still v1. Rows already current are never
selected, so a second run does nothing and an interrupted run resumes. A value that does
not decrypt (unknown key id, tampered, swapped) is left as it is and counted: the command
then exits non-zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from shared.crypto import VERSION, CryptoError, KeyRing
from shared.db.engine import session_scope
from shared.db.repos import encrypted as encrypted_repo
from shared.db.repos.encrypted import EncryptedColumn

log = structlog.get_logger("keys")

Advance = Callable[[int], None]  # called with the rows handled by each committed batch


@dataclass
class ColumnReport:
    name: str
    reencrypted: int = 0
    failed: list[str] = field(default_factory=list)  # primary keys, as text


def pending(factory: sessionmaker[Session], ring: KeyRing) -> dict[str, int]:
    """Rows still to re-encrypt, per column (the progress bar's totals)."""
    prefix = ring.current_prefix()
    with session_scope(factory) as session:
        return {
            c.name: encrypted_repo.count_stale(session, c, prefix)
            for c in encrypted_repo.ENCRYPTED_COLUMNS
        }


def v1_left(factory: sessionmaker[Session]) -> dict[str, int]:
    """Values still in the v1 layout, per column: 0 everywhere means
    CONVEYOR_CRYPTO_ACCEPT_V1=false refuses nothing that is stored."""
    with session_scope(factory) as session:
        return {
            c.name: encrypted_repo.count_prefixed(session, c, VERSION + b":")
            for c in encrypted_repo.ENCRYPTED_COLUMNS
        }


def reencrypt_column(
    factory: sessionmaker[Session],
    ring: KeyRing,
    column: EncryptedColumn,
    *,
    batch: int,
    advance: Advance,
) -> ColumnReport:
    report = ColumnReport(column.name)
    prefix, after = ring.current_prefix(), None
    while True:
        with session_scope(factory) as session:
            rows = encrypted_repo.stale_batch(session, column, prefix, after=after, limit=batch)
            for pk, sealed in rows:
                if _reencrypt_row(session, ring, column, pk, sealed):
                    report.reencrypted += 1
                else:
                    report.failed.append(str(pk))
        if rows:
            after = rows[-1][0]
            advance(len(rows))
        if len(rows) < batch:
            break
    log.info(
        "keys.reencrypted",
        column=column.name,
        count=report.reencrypted,
        failed=len(report.failed),
        kid=ring.current_kid,
    )
    return report


def _reencrypt_row(
    session: Session, ring: KeyRing, column: EncryptedColumn, pk: Any, sealed: bytes
) -> bool:
    where = column.binding(pk)
    try:
        plaintext = ring.open(sealed, where)
    except CryptoError as exc:
        log.error("keys.reencrypt_failed", column=column.name, row=str(pk), error=str(exc))
        return False
    encrypted_repo.store(session, column, pk, ring.seal(plaintext, where), ring.current_kid)
    return True
