"""The `state` of an authorization request (signed, random) and PKCE. Pure: no I/O.

`state` = nonce "." HMAC-SHA256(key, nonce), base64url. The signature lets the callback
refuse forged values before touching the database; the nonce names a single-use row in
`oauth_states` holding the user, the expiry and the PKCE verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from shared.crypto import KeyRing

_LABEL = b"conveyor/oauth-state/v1"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def state_keys(ring: KeyRing) -> list[bytes]:
    """One HMAC key per master key (derived, never the key itself); the first signs."""
    return [hmac.new(key, _LABEL, hashlib.sha256).digest() for _, key in ring.keys]


def new_nonce() -> str:
    return secrets.token_urlsafe(32)


def _signature(key: bytes, nonce: str) -> str:
    return _b64(hmac.new(key, nonce.encode(), hashlib.sha256).digest())


def sign_state(key: bytes, nonce: str) -> str:
    return f"{nonce}.{_signature(key, nonce)}"


def verify_state(keys: Sequence[bytes], state: str) -> str | None:
    """The nonce if `state` was signed by one of `keys`; None otherwise."""
    nonce, sep, signature = state.partition(".")
    if not sep or not nonce or len(state) > 200 or not state.isascii():
        # compare_digest refuses non-ASCII text with a TypeError: what we sign is ASCII
        return None
    for key in keys:
        if hmac.compare_digest(_signature(key, nonce), signature):
            return nonce
    return None


def new_code_verifier() -> str:
    """RFC 7636: 43-128 characters of [A-Za-z0-9-._~]; 64 here."""
    return secrets.token_urlsafe(48)


def code_challenge(verifier: str) -> str:
    """S256."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())
