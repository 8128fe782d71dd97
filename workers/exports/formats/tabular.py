"""CSV (pyarrow's writer), JSON array / JSON lines (orjson) and Parquet (zstd)."""

from __future__ import annotations

from typing import BinaryIO

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from workers.exports.formats.base import row_slices


class CsvWriter:
    def __init__(self, sink: BinaryIO, schema: pa.Schema) -> None:
        self._writer = pacsv.CSVWriter(sink, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


class ParquetWriter:
    def __init__(self, sink: BinaryIO, schema: pa.Schema) -> None:
        self._writer = pq.ParquetWriter(sink, schema, compression="zstd")

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


class JsonWriter:
    """One JSON object per row: a JSON array, or JSON lines. Times are local ISO 8601."""

    def __init__(self, sink: BinaryIO, *, lines: bool) -> None:
        self._sink = sink
        self._lines = lines
        self._first = True
        if not lines:
            sink.write(b"[")

    def write(self, batch: pa.RecordBatch) -> None:
        names = batch.schema.names
        for rows in row_slices(batch):
            encoded = [orjson.dumps(dict(zip(names, row, strict=True))) for row in rows]
            if self._lines:
                self._sink.write(b"\n".join(encoded) + b"\n")
                continue
            self._sink.write((b"\n" if self._first else b",\n") + b",\n".join(encoded))
            self._first = False

    def close(self) -> None:
        if not self._lines:
            self._sink.write(b"\n]\n")
