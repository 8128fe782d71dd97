"""Anonymization: keyed pseudonyms for identifiers, a scrub for free text.

A pseudonym is HMAC-SHA256 under a per-export key (itself an HMAC of the configured secret
and the export id): the same person gets the same pseudonym throughout one export, a
different one in the next, and nobody without the secret can link or reverse them. Each
distinct value is hashed once per batch (dictionary encoding), so 1M rows cost as many HMACs
as there are distinct people, not rows.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pyarrow as pa
import pyarrow.compute as pc

from workers.exports.datasets import Sensitivity

# Emails and phone numbers in free text. The phone pattern is deliberately greedy: digit
# groups that look like a number (also some dates) are scrubbed rather than risk a leak.
EMAIL = r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+"
PHONE = r"\+?\(?\d[\d().\- ]{5,}\d"

_FORMS = {
    "user_id": "user-{}",
    "name": "person-{}",
    "email": "{}@example.invalid",
    "phone": "phone-{}",
}


class Pseudonymizer:
    def __init__(self, secret: bytes, export_id: uuid.UUID) -> None:
        self._key = hmac.new(secret, b"conveyor-export:" + export_id.bytes, "sha256").digest()

    def token(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:20]

    def pseudonyms(self, array: pa.Array, sensitivity: Sensitivity) -> pa.Array:
        """Replace every non-null value by its pseudonym in `sensitivity`'s form."""
        if sensitivity == "text":
            return scrub(array)
        form = _FORMS[sensitivity]
        encoded = pc.dictionary_encode(array)
        tokens = [form.format(self.token(v)) for v in encoded.dictionary.to_pylist()]
        return pc.take(pa.array(tokens, pa.string()), encoded.indices)


def scrub(array: pa.Array) -> pa.Array:
    """Free text without email addresses or phone numbers."""
    cleaned = pc.replace_substring_regex(array, pattern=EMAIL, replacement="[email]")
    return pc.replace_substring_regex(cleaned, pattern=PHONE, replacement="[phone]")
