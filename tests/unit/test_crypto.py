"""Envelope encryption: round trips, binding to associated data, rotation, refusal."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.crypto import CryptoError, KeyRing


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
