"""A standalone HTML report, streamed: title, range, summary, chart, then the table.

Every cell goes through `html.escape`, and a Content-Security-Policy forbids scripts and
remote loads outright, so even a missed escape could not run anything.
"""

from __future__ import annotations

from html import escape
from typing import BinaryIO

import pyarrow as pa

from workers.exports.formats.base import Report, display, label, row_slices
from workers.exports.formats.chart import bar_chart

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}"
    "table{border-collapse:collapse;font-size:.85rem}"
    "th,td{border:1px solid #ccc;padding:.2rem .4rem;vertical-align:top}"
    "th{background:#eef;position:sticky;top:0}"
    "dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}"
)
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


class HtmlWriter:
    def __init__(self, sink: BinaryIO, report: Report) -> None:
        self._sink = sink
        head = [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
            f"<title>{escape(report.title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{escape(report.title)}</h1>",
            f'<p class="range">{escape(report.range_label)}</p>',
            f'<p class="generated">Generated {escape(display(report.generated_at))}'
            + (" · anonymized" if report.anonymized else "")
            + "</p>",
            '<dl class="summary">',
            *(
                f"<dt>{escape(label(name))}</dt><dd>{escape(display(value))}</dd>"
                for name, value in report.summary
            ),
            "</dl>",
        ]
        if report.chart is not None and report.chart_points:
            head.append(f"<figure>{bar_chart(report.chart.title, report.chart_points)}</figure>")
        head.append("<table><thead><tr>")
        head.extend(f"<th>{escape(name)}</th>" for name, _ in report.columns)
        head.append("</tr></thead><tbody>\n")
        sink.write("".join(head).encode())

    def write(self, batch: pa.RecordBatch) -> None:
        for rows in row_slices(batch):
            cells = (
                "<tr>" + "".join(f"<td>{escape(display(v))}</td>" for v in values) + "</tr>\n"
                for values in rows
            )
            self._sink.write("".join(cells).encode())

    def close(self) -> None:
        self._sink.write(b"</tbody></table></body></html>\n")
