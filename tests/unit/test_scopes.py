"""API key scopes (shared/scopes.py) and bound ciphertexts (shared/crypto.py v2), no services."""

from __future__ import annotations

import base64
import os
import uuid
from typing import cast

import pytest
from sqlalchemy.orm import Session

from shared.crypto import Binding, CryptoError, KeyRing
from shared.db.repos import audit as audit_repo
from shared.scopes import InvalidScope, may_submit, may_write, parse_scopes

KINDS = ["diag.noop", "export.create"]


def ring(*kids: str) -> KeyRing:
    return KeyRing.parse(",".join(f"{k}:{base64.b64encode(os.urandom(32)).decode()}" for k in kids))


def test_no_scope_means_write_as_before_scopes_existed() -> None:
    assert parse_scopes([], KINDS) == (False, ["write"])


def test_admin_read_and_submit_scopes_parse() -> None:
    assert parse_scopes(["admin"], KINDS) == (True, [])
    assert parse_scopes(["read"], KINDS) == (False, ["read"])
    assert parse_scopes(["submit:diag.noop", "read"], KINDS) == (
        False,
        ["read", "submit:diag.noop"],
    )


@pytest.mark.parametrize(
    "scopes",
    [["submit:no.such"], ["submit:"], ["delete"], ["admin", "read"], ["write", "submit:diag.noop"]],
)
def test_bad_scopes_are_refused(scopes: list[str]) -> None:
    with pytest.raises(InvalidScope):
        parse_scopes(scopes, KINDS)


def test_submit_scope_allows_only_its_kinds_and_no_other_write() -> None:
    """Given a key scoped to submit diag.noop, When it submits, Then only that kind passes.
    (Broken on purpose once by making may_submit ignore the kind: this test failed.)"""
    scopes = ["submit:diag.noop"]
    assert may_submit(False, scopes, "diag.noop")
    assert not may_submit(False, scopes, "export.create")
    assert not may_write(False, scopes)
    assert not may_write(False, ["read"])
    assert may_submit(False, ["write"], "export.create") and may_submit(True, [], "x")


def binding(column: str, row: uuid.UUID) -> Binding:
    return Binding("oauth_connections", column, row.bytes, legacy=row.bytes)


def test_bound_ciphertexts_cannot_change_column_or_row() -> None:
    """The access token's ciphertext does not open as the refresh token of the same row, nor
    as the access token of another row. (Broken on purpose once by leaving the column out of
    Binding.associated_data: the column swap then decrypted and this test failed.)"""
    keys, row = ring("k1"), uuid.uuid4()
    sealed = keys.seal(b"access", binding("access_token_enc", row))
    assert keys.open(sealed, binding("access_token_enc", row)) == b"access"
    with pytest.raises(CryptoError):
        keys.open(sealed, binding("refresh_token_enc", row))
    with pytest.raises(CryptoError):
        keys.open(sealed, binding("access_token_enc", uuid.uuid4()))


def test_v1_ciphertexts_still_open_until_reencrypted() -> None:
    old = ring("k1")
    row = uuid.uuid4()
    legacy = old.encrypt(b"token", associated_data=row.bytes)  # as written before v2
    rotated = KeyRing((ring("k2").keys[0], old.keys[0]))
    assert rotated.open(legacy, binding("refresh_token_enc", row)) == b"token"
    assert not rotated.is_current(legacy)
    fresh = rotated.seal(b"token", binding("refresh_token_enc", row))
    assert rotated.is_current(fresh) and fresh.startswith(b"v2:k2:")
    assert not old.is_current(fresh)


@pytest.mark.parametrize("name", ["access_token", "client_secret", "password", "code"])
def test_audit_details_refuse_anything_named_like_a_secret(name: str) -> None:
    """The check runs before the session is touched, so no database is needed here."""
    with pytest.raises(ValueError, match="secrets stay out"):
        audit_repo.record(
            cast(Session, object()), action="x", target="y", actor="cli", **{name: "s3cr3t"}
        )
