"""Hostile content made inert: control characters everywhere, formulas in CSV and XLSX.

HTML escaping happens in the HTML writer itself, cell by cell.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

# C0 controls except tab, LF and CR; DEL; and the Unicode bidi overrides/isolates that make
# text display differently from what it is ("Trojan source").
CONTROLS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x{202a}-\x{202e}\x{2066}-\x{2069}]"
# A spreadsheet evaluates a cell starting with these; OWASP's advice is a leading quote.
FORMULA_START = r"^([=+\-@\t\r])"


def strip_controls(array: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(array, pattern=CONTROLS, replacement="")


def defuse_formulas(array: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(
        array, pattern=FORMULA_START, replacement=r"'\1", max_replacements=1
    )
