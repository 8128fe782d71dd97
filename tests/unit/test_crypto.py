"""Envelope encryption: round trips, binding to associated data, rotation, refusal."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.config import Settings
from shared.crypto import Binding, CryptoError, KeyRing


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


RING = KeyRing.parse(f"k2:{key()},k1:{key()}")


@given(st.binary(max_size=2000), st.binary(max_size=64))
def test_round_trip(plaintext: bytes, aad: bytes) -> None:
    sealed = RING.encrypt(plaintext, associated_data=aad)
    if len(plaintext) >= 16:  # shorter strings may occur by chance in random bytes
        assert plaintext not in sealed
    assert RING.decrypt(sealed, associated_data=aad) == plaintext


def test_ciphertext_is_bound_to_its_associated_data() -> None:
    sealed = RING.encrypt(b"refresh-token", associated_data=b"connection-1")
    with pytest.raises(CryptoError):
        RING.decrypt(sealed, associated_data=b"connection-2")


def test_tampering_is_detected() -> None:
    sealed = bytearray(RING.encrypt(b"secret", associated_data=b"a"))
    sealed[-1] ^= 1
    with pytest.raises(CryptoError):
        RING.decrypt(bytes(sealed), associated_data=b"a")


def test_old_keys_still_decrypt_after_rotation() -> None:
    old_key = key()
    old = KeyRing.parse(f"k1:{old_key}")
    sealed = old.encrypt(b"x", associated_data=b"a")
    rotated = KeyRing.parse(f"k2:{key()},k1:{old_key}")
    assert rotated.decrypt(sealed, associated_data=b"a") == b"x"
    assert rotated.needs_rotation(sealed)
    assert not rotated.needs_rotation(rotated.encrypt(b"x", associated_data=b"a"))
    with pytest.raises(CryptoError, match="unknown key id"):
        KeyRing.parse(f"k3:{key()}").decrypt(sealed, associated_data=b"a")


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "k1",
        "k1:notbase64!",
        f"k1:{base64.b64encode(b'short').decode()}",
        f"k1:{key()},k1:{key()}",
        f"bad kid:{key()}",
    ],
)
def test_malformed_key_rings_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        KeyRing.parse(spec)


WHERE = Binding("oauth_connections", "access_token_enc", b"row-1", legacy=b"row-1")


@pytest.mark.parametrize("env", [{}, {"CONVEYOR_CRYPTO_ACCEPT_V1": "false"}])
def test_v1_column_values_decrypt_only_while_accepted(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #12 review, finding 8: v1 column values (bound to the row only) were accepted
    forever. CONVEYOR_CRYPTO_ACCEPT_V1 (default true) now decides; when false a v1 value
    fails exactly like a wrong key (CryptoError), while v2 values, and `decrypt` of v1 key
    wraps that name their own associated data (backups), are unaffected.
    Broken on purpose once (`open` ignoring accept_v1): the false case decrypted the v1 value
    and this test failed."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = f"k1:{key()}"
    ring = Settings(master_keys=spec).key_ring()  # type: ignore[arg-type]
    accepted = not env
    assert ring.accept_v1 is accepted
    legacy = KeyRing.parse(spec).encrypt(b"token", associated_data=WHERE.legacy)
    if accepted:
        assert ring.open(legacy, WHERE) == b"token"
    else:
        with pytest.raises(CryptoError, match="v1 ciphertexts are no longer accepted"):
            ring.open(legacy, WHERE)
    with pytest.raises(CryptoError):  # what a wrong key gives: the same error class
        KeyRing.parse(f"k1:{key()}", accept_v1=accepted).open(legacy, WHERE)
    assert ring.open(ring.seal(b"token", WHERE), WHERE) == b"token"
    assert ring.decrypt(legacy, associated_data=WHERE.legacy) == b"token"
