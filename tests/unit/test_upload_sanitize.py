"""File name sanitizer: hostile examples and property-tested invariants."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.uploads.sanitize import MAX_NAME_BYTES, extension_of, sanitize_filename


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("photo\u202egnp.exe", "photognp.exe"),  # right-to-left override removed
        ("a\x00b\x1f.txt", "ab.txt"),
        ("e\u0301te\u0301.jpg", "\u00e9t\u00e9.jpg"),  # NFC
        ("..", "file"),
        ("   ", "file"),
        ("CON.txt", "_CON.txt"),
        ("what?<is>|this*.pdf", "what__is__this_.pdf"),
        ("zero\u200bwidth.png", "zerowidth.png"),
        (" .hidden. ", "hidden"),
    ],
)
def test_hostile_names(raw: str, expected: str) -> None:
    assert sanitize_filename(raw) == expected


def test_long_names_keep_their_extension() -> None:
    name = sanitize_filename("é" * 400 + ".jpeg")
    assert name.endswith(".jpeg")
    assert len(name.encode()) <= MAX_NAME_BYTES


def test_extension_of() -> None:
    assert extension_of("a.JPG") == "jpg"
    assert extension_of(".bashrc") == ""
    assert extension_of("noext") == ""


@given(st.text(max_size=600))
def test_invariants(raw: str) -> None:
    name = sanitize_filename(raw)
    assert name
    assert name not in {".", ".."}
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert unicodedata.normalize("NFC", name) == name
    assert "/" not in name and "\\" not in name
    assert all(unicodedata.category(c) not in {"Cc", "Cf", "Cs", "Co", "Cn"} for c in name)
    assert name == name.strip(" .")
    assert sanitize_filename(name) == name
