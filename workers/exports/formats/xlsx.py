"""XLSX with xlsxwriter in constant-memory mode: a summary sheet, then the rows.

constant_memory flushes each row as it is written, so memory stays flat at any size; the
price is rows strictly in order, which a stream gives anyway. Text is always written as
text (never parsed as a formula, number or URL).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import xlsxwriter
from xlsxwriter.worksheet import Worksheet

from workers.exports.errors import TooManyRows
from workers.exports.formats.base import XLSX_MAX_ROWS, Report, display, label, row_slices


class XlsxWriter:
    def __init__(self, sink: BinaryIO, report: Report, work_dir: Path) -> None:
        self._sink = sink
        self._path = work_dir / "export.xlsx"
        self._book = xlsxwriter.Workbook(
            str(self._path),
            {
                "constant_memory": True,
                "tmpdir": str(work_dir),
                "strings_to_formulas": False,
                "strings_to_numbers": False,
                "strings_to_urls": False,
            },
        )
        bold = self._book.add_format({"bold": True})
        self._time = self._book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self._date = self._book.add_format({"num_format": "yyyy-mm-dd"})
        self._summary_sheet(report, bold)
        self._sheet = self._book.add_worksheet("Data")
        self._sheet.freeze_panes(1, 0)
        for col, (name, _) in enumerate(report.columns):
            self._sheet.write_string(0, col, name, bold)
        self._row = 1

    def _summary_sheet(self, report: Report, bold: Any) -> None:
        sheet = self._book.add_worksheet("Summary")
        sheet.write_string(0, 0, report.title, bold)
        sheet.write_string(1, 0, report.range_label)
        for row, (name, value) in enumerate(report.summary, start=3):
            sheet.write_string(row, 0, label(name))
            sheet.write_string(row, 1, display(value))

    def write(self, batch: pa.RecordBatch) -> None:
        if self._row + batch.num_rows > XLSX_MAX_ROWS + 1:
            raise TooManyRows(f"XLSX holds at most {XLSX_MAX_ROWS} rows per sheet")
        cells = [self._cell_writer(column.type) for column in batch.columns]
        sheet, row = self._sheet, self._row
        for rows in row_slices(batch):
            for values in rows:
                for col, value in enumerate(values):
                    if value is not None:
                        cells[col](sheet, row, col, value)
                row += 1
        self._row = row

    def _cell_writer(self, kind: pa.DataType) -> Callable[[Worksheet, int, int, Any], Any]:
        if pa.types.is_timestamp(kind):
            fmt = self._time
            return lambda s, r, c, v: s.write_datetime(r, c, _naive(v), fmt)
        if pa.types.is_date(kind):
            fmt = self._date
            return lambda s, r, c, v: s.write_datetime(r, c, v, fmt)
        if pa.types.is_boolean(kind):
            return lambda s, r, c, v: s.write_boolean(r, c, v)
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
            return lambda s, r, c, v: s.write_number(r, c, float(v))
        return lambda s, r, c, v: s.write_string(r, c, str(v))

    def close(self) -> None:
        self._book.close()
        with self._path.open("rb") as built:
            shutil.copyfileobj(built, self._sink, 1024 * 1024)


def _naive(value: datetime | date) -> datetime | date:
    return value.replace(tzinfo=None) if isinstance(value, datetime) else value
