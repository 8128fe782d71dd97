"""File writers, one per format, all fed the same Arrow record batches.

Each writer's module is imported when its format is first written: the PDF and XLSX
libraries (fpdf2 and xlsxwriter; with pypdf, lazy in uploads, ~29 MB resident and 0.5 s of
import together) stay out of every worker process that never writes one (every pool imports
every job family's actors; tests/unit/test_worker_imports.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from shared.jobs.payloads.exports import ExportFormat
from workers.exports.formats.base import Report, Writer

EXTENSIONS = {
    ExportFormat.CSV: "csv",
    ExportFormat.JSON: "json",
    ExportFormat.JSONL: "jsonl",
    ExportFormat.PARQUET: "parquet",
    ExportFormat.XLSX: "xlsx",
    ExportFormat.PDF: "pdf",
    ExportFormat.HTML: "html",
}

CONTENT_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSON: "application/json",
    ExportFormat.JSONL: "application/x-ndjson",
    ExportFormat.PARQUET: "application/vnd.apache.parquet",
    ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ExportFormat.PDF: "application/pdf",
    ExportFormat.HTML: "text/html; charset=utf-8",
}

# Formats a spreadsheet opens: their text cells get formula neutralization.
SPREADSHEET_FORMATS = frozenset({ExportFormat.CSV, ExportFormat.XLSX})


def open_writer(
    fmt: ExportFormat, sink: BinaryIO, schema: pa.Schema, report: Report, work_dir: Path
) -> Writer:
    if fmt in (ExportFormat.CSV, ExportFormat.JSON, ExportFormat.JSONL, ExportFormat.PARQUET):
        from workers.exports.formats import tabular

        if fmt is ExportFormat.CSV:
            return tabular.CsvWriter(sink, schema)
        if fmt is ExportFormat.PARQUET:
            return tabular.ParquetWriter(sink, schema)
        return tabular.JsonWriter(sink, lines=fmt is ExportFormat.JSONL)
    if fmt is ExportFormat.XLSX:
        from workers.exports.formats.xlsx import XlsxWriter

        return XlsxWriter(sink, report, work_dir)
    if fmt is ExportFormat.PDF:
        from workers.exports.formats.pdf import PdfWriter

        return PdfWriter(sink, report)
    from workers.exports.formats.html import HtmlWriter

    return HtmlWriter(sink, report)


__all__ = ["CONTENT_TYPES", "EXTENSIONS", "SPREADSHEET_FORMATS", "Report", "Writer", "open_writer"]
