"""Anonymization and neutralization, as Arrow compute over record batches."""

from __future__ import annotations

import uuid

import pyarrow as pa

from workers.exports.anonymize import Pseudonymizer, scrub
from workers.exports.formats.chart import bar_chart
from workers.exports.neutralize import defuse_formulas, strip_controls

SECRET = b"s" * 32


def test_pseudonyms_are_stable_within_an_export_and_differ_across_exports() -> None:
    first = Pseudonymizer(SECRET, uuid.uuid4())
    values = pa.array(["alice@example.org", "bob@example.org", "alice@example.org", None])
    out = first.pseudonyms(values, "email").to_pylist()
    assert out[0] == out[2] != out[1] and out[3] is None
    assert all(v.endswith("@example.invalid") and "alice" not in v for v in out[:3])
    assert first.pseudonyms(values, "email").to_pylist() == out
    other = Pseudonymizer(SECRET, uuid.uuid4()).pseudonyms(values, "email").to_pylist()
    assert other[0] != out[0]
    another_key = Pseudonymizer(b"t" * 32, uuid.uuid4()).pseudonyms(values, "email")
    assert another_key.to_pylist()[0] != out[0]


def test_free_text_loses_emails_and_phone_numbers() -> None:
    text = pa.array(
        [
            "write to Bob.Smith+x@mail.example.co.uk today",
            "call +47 912 34 567 or (555) 123-4567",
            "3 apples and 12 pears",
        ]
    )
    assert scrub(text).to_pylist() == [
        "write to [email] today",
        "call [phone] or [phone]",
        "3 apples and 12 pears",
    ]


def test_formulas_are_defused_and_control_characters_removed() -> None:
    cells = pa.array(["=1+2", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx", "fine = ok", "a\x00\x07b"])
    out = defuse_formulas(strip_controls(cells)).to_pylist()
    assert out == ["'=1+2", "'+cmd", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "fine = ok", "ab"]
    assert strip_controls(pa.array(["evil\u202etxt.exe"])).to_pylist() == ["eviltxt.exe"]


def test_chart_labels_are_escaped() -> None:
    svg = bar_chart("<b>title</b>", [("<script>alert(1)</script>", 3.0), ("b", 1.0)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count("<rect") == 2
