"""`conveyor keys reencrypt` on real PostgreSQL: after a key ring rotation every encrypted
column ends up under the new key in the v2 (column-bound) format; interrupted runs resume,
second runs change nothing, values that do not decrypt are reported and left alone."""

from __future__ import annotations

import base64
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select

from shared.crypto import KeyRing
from shared.db.engine import session_scope
from shared.db.models import OAuthConnection, OAuthState
from shared.db.repos.encrypted import ENCRYPTED_COLUMNS
from shared.oauth import tokens
from shared.oauth.connect import verifier_binding
from shared.reencrypt import reencrypt_column
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def spec(kid: str) -> str:
    return f"{kid}:{base64.b64encode(os.urandom(32)).decode()}"


def seed(stack: Stack, ring: KeyRing, count: int) -> dict[uuid.UUID, tuple[str, str]]:
    """Connections written the old way: v1 ciphertexts bound to the row id only."""
    made = {}
    with session_scope(stack.sessions) as session:
        for i in range(count):
            row_id = uuid.uuid4()
            access, refresh = f"access-{uuid.uuid4()}", f"refresh-{uuid.uuid4()}"
            session.add(
                OAuthConnection(
                    id=row_id,
                    user_id=f"reenc-{i}-{row_id.hex[:6]}",
                    provider="generic",
                    status="active",
                    refresh_count=0,
                    recent_token_requests=[],
                    access_token_enc=ring.encrypt(access.encode(), associated_data=row_id.bytes),
                    refresh_token_enc=ring.encrypt(refresh.encode(), associated_data=row_id.bytes),
                    token_key_id=ring.current_kid,
                )
            )
            made[row_id] = (access, refresh)
    return made


def stored(stack: Stack, ids: list[uuid.UUID]) -> dict[uuid.UUID, OAuthConnection]:
    with session_scope(stack.sessions) as session:
        rows = session.execute(select(OAuthConnection).where(OAuthConnection.id.in_(ids)))
        return {row.id: row for row in rows.scalars()}


def test_reencrypt_moves_every_column_to_the_new_key_and_is_idempotent(fresh_stack: Stack) -> None:
    """(Broken on purpose once by leaving out `access_token_enc` from ENCRYPTED_COLUMNS: its
    values stayed v1 under the old key and this test failed.)"""
    stack = fresh_stack
    old = spec("old")
    made = seed(stack, KeyRing.parse(old), 7)
    nonce = f"n{uuid.uuid4().hex}"
    with session_scope(stack.sessions) as session:
        session.add(
            OAuthState(
                nonce=nonce,
                provider="generic",
                user_id="reenc-state",
                code_verifier_enc=KeyRing.parse(old).encrypt(
                    b"verifier", associated_data=nonce.encode()
                ),
                expires_at=datetime.now(UTC) + timedelta(minutes=5),
            )
        )
    new = spec("new")
    result = stack.cli("keys", "reencrypt", "--batch", "3", CONVEYOR_MASTER_KEYS=f"{new},{old}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "under key 'new'" in result.stdout
    assert "0 v1 value(s) left" in result.stdout

    only_new = KeyRing.parse(new)  # the old key can be retired now
    rows = stored(stack, list(made))
    for row_id, (access, refresh) in made.items():
        row = rows[row_id]
        assert row.access_token_enc is not None and row.refresh_token_enc is not None
        assert row.access_token_enc.startswith(b"v2:new:")
        assert row.refresh_token_enc.startswith(b"v2:new:")
        assert tokens.access_token(only_new, row) == access
        assert tokens.refresh_token(only_new, row) == refresh
        assert row.token_key_id == "new"
    with session_scope(stack.sessions) as session:
        state = session.get(OAuthState, nonce)
        assert state is not None and state.code_verifier_enc is not None
        assert only_new.open(state.code_verifier_enc, verifier_binding(nonce)) == b"verifier"

    again = stack.cli("keys", "reencrypt", CONVEYOR_MASTER_KEYS=f"{new},{old}")
    assert again.returncode == 0, again.stdout + again.stderr
    after = stored(stack, list(made))
    assert all(after[i].access_token_enc == rows[i].access_token_enc for i in made)


def test_an_interrupted_run_resumes_without_redoing_committed_batches(fresh_stack: Stack) -> None:
    stack = fresh_stack
    old = spec("old")
    made = seed(stack, KeyRing.parse(old), 5)
    ring = KeyRing.parse(f"{spec('next')},{old}")
    column = next(c for c in ENCRYPTED_COLUMNS if c.column == "refresh_token_enc")

    class Crash(Exception):
        pass

    def crash_after_first_batch(done: int) -> None:
        raise Crash

    with pytest.raises(Crash):
        reencrypt_column(stack.sessions, ring, column, batch=2, advance=crash_after_first_batch)
    first = {i: r.refresh_token_enc for i, r in stored(stack, list(made)).items()}
    done_first = {i for i, value in first.items() if value and ring.is_current(value)}
    assert len(done_first) >= 2  # the first batch was committed before the crash

    report = reencrypt_column(stack.sessions, ring, column, batch=2, advance=lambda n: None)
    assert not report.failed
    final = stored(stack, list(made))
    assert all(ring.is_current(final[i].refresh_token_enc or b"") for i in made)
    assert all(final[i].refresh_token_enc == first[i] for i in done_first)  # not redone
    assert all(tokens.refresh_token(ring, final[i]) == made[i][1] for i in made)


def test_values_that_do_not_decrypt_are_reported_and_left_alone(fresh_stack: Stack) -> None:
    stack = fresh_stack
    stranger = KeyRing.parse(spec("gone"))  # a key no longer in the ring
    made = seed(stack, stranger, 1)
    [row_id] = made
    try:
        ring = spec("cur")
        result = stack.cli("keys", "reencrypt", CONVEYOR_MASTER_KEYS=ring)
        assert result.returncode == 1
        assert str(row_id) in result.stdout and "could not be decrypted" in result.stdout
        row = stored(stack, [row_id])[row_id]
        assert row.access_token_enc is not None and row.access_token_enc.startswith(b"v1:gone:")
    finally:
        with session_scope(stack.sessions) as session:
            session.execute(delete(OAuthConnection).where(OAuthConnection.id == row_id))


def test_the_v1_upgrade_path_reencrypt_then_refuse_v1(fresh_stack: Stack) -> None:
    """Issue #12 review, finding 8 (docs/security.md, "Retiring v1"): with the key unchanged,
    `keys reencrypt` upgrades v1 column values to v2 and says how many v1 values are left (0
    after a complete run); then CONVEYOR_CRYPTO_ACCEPT_V1=false refuses nothing stored.
    Run with the setting already false, reencrypt does not read v1 either: it names them,
    counts them as left and exits 1, leaving them as they were.
    Broken on purpose once (v1_left counting v2 values instead of v1): the first run
    reported 0 v1 values left while 6 were, and this test failed."""
    stack = fresh_stack
    keys = spec("only")
    made = seed(stack, KeyRing.parse(keys), 3)
    strict = {"CONVEYOR_MASTER_KEYS": keys, "CONVEYOR_CRYPTO_ACCEPT_V1": "false"}

    early = stack.cli("keys", "reencrypt", "--batch", "2", COLUMNS="250", **strict)
    assert early.returncode == 1, early.stdout + early.stderr
    assert "6 v1 value(s) left" in early.stdout and "CRYPTO_ACCEPT_V1 is false" in early.stdout
    rows = stored(stack, list(made))
    assert all((rows[i].access_token_enc or b"").startswith(b"v1:only:") for i in made)

    upgraded = stack.cli("keys", "reencrypt", "--batch", "2", CONVEYOR_MASTER_KEYS=keys)
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    assert "0 v1 value(s) left" in upgraded.stdout
    refusing = KeyRing.parse(keys, accept_v1=False)  # what the app reads with, from now on
    rows = stored(stack, list(made))
    for row_id, (access, refresh) in made.items():
        assert (rows[row_id].access_token_enc or b"").startswith(b"v2:only:")
        assert tokens.access_token(refusing, rows[row_id]) == access
        assert tokens.refresh_token(refusing, rows[row_id]) == refresh
    again = stack.cli("keys", "reencrypt", COLUMNS="250", **strict)
    assert again.returncode == 0 and "0 v1 value(s) left" in again.stdout
