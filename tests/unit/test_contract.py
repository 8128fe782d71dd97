"""The wire contract: parsing, refusal reasons, and the published JSON Schema."""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import InvalidMessage
from shared.messaging.contract import JobEnvelope, envelope_json_schema, parse_envelope

SCHEMA_FILE = Path(__file__).parents[2] / "docs" / "schemas" / "job-envelope-v1.json"


def test_a_minimal_message_parses_with_defaults() -> None:
    envelope = parse_envelope(b'{"version": 1, "kind": "diag.noop", "user_id": "u"}')
    assert envelope.payload == {}
    assert envelope.priority == "normal"
    assert envelope.job_id is None


def test_round_trip_keeps_every_field() -> None:
    original = JobEnvelope(
        version=1,
        kind="image.thumbnail",
        user_id="u",
        job_id=uuid.uuid4(),
        payload={"file_id": "x"},
        priority="bulk",
    )
    assert parse_envelope(original.to_bytes()) == original


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "not_json"),
        (b"\x80\x81", "not_json"),
        (b"[]", "not_an_object"),
        (b'"x"', "not_an_object"),
        (b'{"kind": "diag.noop", "user_id": "u"}', "unknown_version"),
        (b'{"version": "1", "kind": "diag.noop", "user_id": "u"}', "unknown_version"),
        (b'{"version": 2, "kind": "diag.noop", "user_id": "u"}', "unknown_version"),
        (b'{"version": 1, "kind": "Diag Noop", "user_id": "u"}', "invalid_envelope"),
        (b'{"version": 1, "kind": "../etc", "user_id": "u"}', "invalid_envelope"),
        (b'{"version": 1, "kind": "diag.noop", "user_id": ""}', "invalid_envelope"),
        (
            b'{"version": 1, "kind": "diag.noop", "user_id": "u", "job_id": "nope"}',
            "invalid_envelope",
        ),
        (b'{"version": 1, "kind": "diag.noop", "user_id": "u", "payload": []}', "invalid_envelope"),
        (
            b'{"version": 1, "kind": "diag.noop", "user_id": "u", "surprise": true}',
            "invalid_envelope",
        ),
        (b'{"version": true, "kind": "diag.noop", "user_id": "u"}', "unknown_version"),
        (b'{"version": 1.0, "kind": "diag.noop", "user_id": "u"}', "unknown_version"),
        (
            b'{"version": 1, "kind": "diag.noop", "user_id": "u", "run_at": "2030-01-01T10:00"}',
            "invalid_envelope",
        ),
        (
            b'{"version": 1, "kind": "diag.noop", "user_id": "u", "run_at": "10000-01-01T00:00Z"}',
            "invalid_envelope",
        ),
        (b"{" + b" " * 1_048_577 + b"}", "too_large"),
    ],
)
def test_bad_messages_are_refused_with_a_stable_code(body: bytes, code: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_envelope(body)
    assert caught.value.code == code


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_another_exception(body: bytes) -> None:
    with contextlib.suppress(InvalidMessage):
        parse_envelope(body)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_arbitrary_json_never_escapes_as_another_exception(value: object) -> None:
    with contextlib.suppress(InvalidMessage):
        parse_envelope(json.dumps(value).encode())


def test_published_schema_file_matches_the_model() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == envelope_json_schema()


def test_schema_and_parser_agree_on_examples() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    good = {
        "version": 1,
        "kind": "diag.noop",
        "user_id": "u",
        "priority": "interactive",
        "job_id": str(uuid.uuid4()),
        "payload": {"sleep_ms": 5},
    }
    jsonschema.validate(good, schema)
    parse_envelope(json.dumps(good).encode())
    for bad in ({**good, "version": 2}, {**good, "extra": 1}, {**good, "priority": "urgent"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(InvalidMessage):
            parse_envelope(json.dumps(bad).encode())
