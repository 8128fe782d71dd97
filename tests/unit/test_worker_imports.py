"""A worker process loads every job family's actors; the heaviest format libraries wait for
their first job (workers/exports/formats/__init__.py, workers/uploads/metadata.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAZY = ("fpdf", "xlsxwriter", "pypdf")

PROBE = """
import json, sys
from workers.registry import import_actor_modules
import_actor_modules()
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in %r)))
"""


def test_the_actor_modules_load_without_the_pdf_and_xlsx_libraries() -> None:
    """Loading the actor modules: 169 -> 140 MB resident, 1.5 -> 1.0 s of import, that a pool
    never writing a PDF or XLSX, or reading a PDF upload, does not need. Broken on purpose
    once (the PDF writer imported at the top of the formats package): fpdf was loaded."""
    probe = subprocess.run(
        [sys.executable, "-c", PROBE % (LAZY,)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(probe.stdout.splitlines()[-1]) == []
