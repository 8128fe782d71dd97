"""All SQL of `conveyor keys reencrypt`: every column that holds a key-ring ciphertext.

A column is walked in primary-key order in small batches; a row is picked only while its
value does not start with the ring's current prefix (v2 + current key id), so a committed
batch is never read again and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, LargeBinary, Table, func, select, update
from sqlalchemy.orm import Session

from shared.crypto import Binding
from shared.db.models import OAuthConnection, OAuthState
from shared.oauth.connect import verifier_binding
from shared.oauth.tokens import binding as token_binding

OAUTH: Table = OAuthConnection.__table__  # type: ignore[assignment]
STATES: Table = OAuthState.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class EncryptedColumn:
    table: Table
    pk: str
    column: str
    binding: Callable[[Any], Binding]  # primary key value -> where the ciphertext lives
    # Columns to set with each re-encrypted value (ring.current_kid is passed in).
    also: Callable[[str], dict[str, Any]] = lambda kid: {}

    @property
    def name(self) -> str:
        return f"{self.table.name}.{self.column}"

    def col(self) -> Column[bytes]:
        return self.table.c[self.column]


ENCRYPTED_COLUMNS = (
    EncryptedColumn(
        OAUTH,
        "id",
        "access_token_enc",
        lambda pk: token_binding(pk, "access_token_enc"),
        also=lambda kid: {"token_key_id": kid},
    ),
    EncryptedColumn(
        OAUTH,
        "id",
        "refresh_token_enc",
        lambda pk: token_binding(pk, "refresh_token_enc"),
        also=lambda kid: {"token_key_id": kid},
    ),
    EncryptedColumn(STATES, "nonce", "code_verifier_enc", verifier_binding),
)


def _stale(column: EncryptedColumn, prefix: bytes) -> Any:
    return column.col().is_not(None) & (_head(column, prefix) != prefix)


def _head(column: EncryptedColumn, prefix: bytes) -> Any:
    return func.substring(column.col(), 1, len(prefix)).cast(LargeBinary)


def count_stale(session: Session, column: EncryptedColumn, prefix: bytes) -> int:
    stmt = select(func.count()).select_from(column.table).where(_stale(column, prefix))
    return int(session.execute(stmt).scalar_one())


def count_prefixed(session: Session, column: EncryptedColumn, prefix: bytes) -> int:
    """Values that start with `prefix` (e.g. b"v1:": still in the v1 layout)."""
    stmt = select(func.count()).select_from(column.table).where(_head(column, prefix) == prefix)
    return int(session.execute(stmt).scalar_one())


def stale_batch(
    session: Session, column: EncryptedColumn, prefix: bytes, *, after: Any, limit: int
) -> list[tuple[Any, bytes]]:
    """Up to `limit` rows past `after` (primary key) still to re-encrypt, locked until the
    batch commits (a token refresh of the same row waits for it, and vice versa)."""
    pk = column.table.c[column.pk]
    stmt = select(pk, column.col()).where(_stale(column, prefix)).order_by(pk).limit(limit)
    if after is not None:
        stmt = stmt.where(pk > after)
    rows = session.execute(stmt.with_for_update(of=column.table)).all()
    return [(row[0], bytes(row[1])) for row in rows]


def store(session: Session, column: EncryptedColumn, pk: Any, value: bytes, kid: str) -> None:
    stmt = (
        update(column.table)
        .where(column.table.c[column.pk] == pk)
        .values({column.column: value, **column.also(kid)})
    )
    session.execute(stmt)
