"""What every writer gets: the report's framing (title, range, summary, chart) and batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

import pyarrow as pa

from workers.exports.datasets import Chart, ColumnType

XLSX_MAX_ROWS = 1_048_576 - 1  # Excel's sheet limit, less the header row


@dataclass(frozen=True)
class Report:
    title: str
    range_label: str
    generated_at: datetime
    columns: list[tuple[str, ColumnType]]
    summary: list[tuple[str, Any]] = field(default_factory=list)
    chart: Chart | None = None
    chart_points: list[tuple[str, float]] = field(default_factory=list)
    anonymized: bool = False


class Writer(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None: ...


ROWS_PER_SLICE = 4096  # Python objects for this many rows at a time, not a whole batch


def row_slices(batch: pa.RecordBatch) -> Iterator[list[tuple[Any, ...]]]:
    """The batch's rows as tuples of Python values, a bounded slice at a time."""
    for offset in range(0, batch.num_rows, ROWS_PER_SLICE):
        part = batch.slice(offset, ROWS_PER_SLICE)
        yield list(zip(*(column.to_pylist() for column in part.columns), strict=True))


def display(value: Any) -> str:
    """A cell as report text (PDF, HTML): ISO times without microseconds, empty for null."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.replace(microsecond=0).isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def label(name: str) -> str:
    return name.replace("_", " ").capitalize()
