"""A readable PDF report with fpdf2: title, range, summary, then a table whose header row
repeats on every page, and "Page n of N" in the footer.

fpdf2 keeps the document in memory until the end, which is why PDF exports have a row cap
(`CONVEYOR_EXPORT_PDF_MAX_ROWS`). Long cells are cut to the column width with an ellipsis:
the PDF is for reading; the data formats carry every character.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
from fpdf import FPDF

from workers.exports.datasets import ColumnType
from workers.exports.formats.base import Report, display, label, row_slices

FONT_FILE = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
WEIGHTS: dict[ColumnType, float] = {
    "text": 3.0,
    "id": 1.1,
    "time": 2.3,
    "date": 1.3,
    "int": 1.0,
    "float": 1.0,
    "bool": 0.7,
}
SHORT_ID = 8  # ids are shortened like git hashes: the data formats carry them whole
SIZE = 7.0  # table font size, pt
ROW_H = 4.2  # mm


class _Document(FPDF):
    def __init__(self, report: Report) -> None:
        super().__init__(orientation="L", unit="mm", format="A4")
        self.report = report
        self.unicode = FONT_FILE.exists()
        if self.unicode:
            self.add_font("body", "", str(FONT_FILE))
        self.family = "body" if self.unicode else "helvetica"
        usable = self.w - self.l_margin - self.r_margin
        weights = [WEIGHTS[kind] for _, kind in report.columns]
        self.widths = [usable * w / sum(weights) for w in weights]
        # Characters that fit a column, from the font's average width (no per-cell measuring).
        self.set_font(self.family, size=SIZE)
        sample = "abcdefghijklmnopqrstuvwxyz 0123456789"
        average = self.get_string_width(sample) / len(sample)
        self.fits = [max(3, int((w - 1.6) / average)) for w in self.widths]
        self.kinds = [kind for _, kind in report.columns]
        self.in_table = False
        self.alias_nb_pages()
        self.set_auto_page_break(True, margin=14)

    def text_of(self, value: str) -> str:
        return value if self.unicode else value.encode("latin-1", "replace").decode("latin-1")

    def header(self) -> None:
        if self.in_table:
            self.table_header()

    def table_header(self) -> None:
        self.set_font(self.family, size=SIZE)
        self.set_fill_color(225, 230, 245)
        for (name, _), width, fits in zip(self.report.columns, self.widths, self.fits, strict=True):
            self.cell(width, ROW_H + 1, self.text_of(_cut(label(name), fits)), border=1, fill=True)
        self.ln()
        self.set_font(self.family, size=SIZE)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(self.family, size=8)
        self.cell(0, 5, f"Page {self.page_no()} of {{nb}}", align="C")


class PdfWriter:
    def __init__(self, sink: BinaryIO, report: Report) -> None:
        self._sink = sink
        doc = self._doc = _Document(report)
        doc.add_page()
        doc.set_font(doc.family, size=16)
        doc.cell(0, 9, doc.text_of(report.title), new_x="LMARGIN", new_y="NEXT")
        doc.set_font(doc.family, size=10)
        doc.cell(0, 6, doc.text_of(report.range_label), new_x="LMARGIN", new_y="NEXT")
        generated = f"Generated {display(report.generated_at)}"
        generated += " · anonymized" if report.anonymized else ""
        doc.cell(0, 6, doc.text_of(generated), new_x="LMARGIN", new_y="NEXT")
        doc.ln(2)
        for name, value in report.summary:
            doc.cell(60, 5, doc.text_of(label(name)))
            doc.cell(0, 5, doc.text_of(display(value)), new_x="LMARGIN", new_y="NEXT")
        doc.ln(4)
        doc.in_table = True
        doc.table_header()
        doc.set_font(doc.family, size=SIZE)
        self._xs = [doc.l_margin + sum(doc.widths[:i]) for i in range(len(doc.widths))]

    def write(self, batch: pa.RecordBatch) -> None:
        # text() and line() instead of cell(): five times faster, and a row is a fixed height.
        doc = self._doc
        for rows in row_slices(batch):
            for values in rows:
                if doc.get_y() + ROW_H > doc.page_break_trigger:
                    doc.add_page()  # header() repeats the column headings
                self._row(values)

    def _row(self, values: tuple[object, ...]) -> None:
        doc = self._doc
        y = doc.get_y()
        for x, fits, kind, value in zip(self._xs, doc.fits, doc.kinds, values, strict=True):
            shown = _one_line(value)[:SHORT_ID] if kind == "id" else _one_line(value)
            doc.text(x + 0.8, y + ROW_H - 1.2, doc.text_of(_cut(shown, fits)))
            doc.line(x, y, x, y + ROW_H)
        doc.line(self._xs[-1] + doc.widths[-1], y, self._xs[-1] + doc.widths[-1], y + ROW_H)
        doc.line(doc.l_margin, y + ROW_H, self._xs[-1] + doc.widths[-1], y + ROW_H)
        doc.set_y(y + ROW_H)

    def close(self) -> None:
        self._sink.write(bytes(self._doc.output()))


def _one_line(value: Any) -> str:
    return " ".join(display(value).split())


def _cut(text: str, fits: int) -> str:
    return text if len(text) <= fits else text[: fits - 1] + "…"
