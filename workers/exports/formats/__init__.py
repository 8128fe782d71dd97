"""File writers, one per format, all fed the same Arrow record batches."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from shared.jobs.payloads.exports import ExportFormat
from workers.exports.formats.base import Report, Writer
from workers.exports.formats.html import HtmlWriter
from workers.exports.formats.pdf import PdfWriter
from workers.exports.formats.tabular import CsvWriter, JsonWriter, ParquetWriter
from workers.exports.formats.xlsx import XlsxWriter

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
    if fmt is ExportFormat.CSV:
        return CsvWriter(sink, schema)
    if fmt in (ExportFormat.JSON, ExportFormat.JSONL):
        return JsonWriter(sink, lines=fmt is ExportFormat.JSONL)
    if fmt is ExportFormat.PARQUET:
        return ParquetWriter(sink, schema)
    if fmt is ExportFormat.XLSX:
        return XlsxWriter(sink, report, work_dir)
    if fmt is ExportFormat.PDF:
        return PdfWriter(sink, report)
    return HtmlWriter(sink, report)


__all__ = ["CONTENT_TYPES", "EXTENSIONS", "SPREADSHEET_FORMATS", "Report", "Writer", "open_writer"]
