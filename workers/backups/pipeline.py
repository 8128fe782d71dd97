"""Record batches → Arrow IPC stream → zstd → sealed chunks, and back. No I/O of its own.

Memory stays bounded by one record batch plus one chunk, whatever the table's size: the
writer side is a generator the S3 multipart upload pulls from, the reader side a generator
over ranged-GET pieces.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import zstandard

from workers.backups.chunks import CHUNK_SIZE, BackupCorrupt, Sealer, open_segment
from workers.backups.manifest import Segment


@dataclass
class SegmentStats:
    table: str
    offset: int
    rows: int = 0
    plain_bytes: int = 0
    compressed_bytes: int = 0
    length: int = 0
    chunks: int = 0
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)

    def segment(self) -> Segment:
        return Segment(
            table=self.table,
            offset=self.offset,
            length=self.length,
            chunks=self.chunks,
            rows=self.rows,
            plain_bytes=self.plain_bytes,
            compressed_bytes=self.compressed_bytes,
            sha256=self.hasher.hexdigest(),
        )


class _SealingSink:
    """The file Arrow's IPC writer writes to: hash, compress, seal, queue."""

    def __init__(self, stats: SegmentStats, sealer: Sealer, level: int) -> None:
        self.stats = stats
        self.sealer = sealer
        self.compressor = zstandard.ZstdCompressor(level=level).compressobj()
        self.out: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        data = bytes(data)
        self.stats.hasher.update(data)
        self.stats.plain_bytes += len(data)
        self._push(self.compressor.compress(data))
        return len(data)

    def flush(self) -> None:
        pass

    def _push(self, compressed: bytes) -> None:
        if compressed:
            self.stats.compressed_bytes += len(compressed)
            self.out.extend(self.sealer.feed(compressed))

    def finish(self) -> None:
        self._push(self.compressor.flush())
        self.out.append(self.sealer.finish())

    def drain(self) -> Iterator[bytes]:
        out, self.out = self.out, []
        for chunk in out:
            self.stats.length += len(chunk)
            yield chunk
        self.stats.chunks = self.sealer.chunks


ProgressFn = Callable[[str, int, int], None]  # (table, rows in the batch, object bytes so far)


def seal_tables(
    sources: Iterable[tuple[str, pa.RecordBatchReader]],
    *,
    key: bytes,
    backup_id: uuid.UUID,
    stats: list[SegmentStats],
    on_batch: ProgressFn,
    level: int = 3,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[bytes]:
    """The data object's bytes, one segment per table; `stats` fills in as it goes."""
    offset = 0
    for index, (table, reader) in enumerate(sources):
        segment = SegmentStats(table, offset)
        stats.append(segment)
        sink = _SealingSink(segment, Sealer(key, backup_id, index, chunk_size), level)
        with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                segment.rows += batch.num_rows
                yield from sink.drain()
                on_batch(table, batch.num_rows, offset + segment.length)
        sink.finish()
        yield from sink.drain()
        offset += segment.length


class IterReader(io.RawIOBase):
    """A readable file over an iterator of byte strings (what pyarrow and minio pull from).

    `read(n)` returns n bytes unless the iterator ends: pyarrow treats a short read as EOF.
    """

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._buffer = bytearray()
        self._done = False
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        wanted = None if size is None or size < 0 else size
        while not self._done and (wanted is None or len(self._buffer) < wanted):
            try:
                self._buffer += next(self._pieces)
            except StopIteration:
                self._done = True
            except BaseException as exc:  # remembered: pyarrow may wrap what read() raises
                self.error = exc
                raise
        take = len(self._buffer) if wanted is None else min(wanted, len(self._buffer))
        out = bytes(self._buffer[:take])
        del self._buffer[:take]
        return out

    def readinto(self, target: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(target))
        target[: len(data)] = data
        return len(data)


def open_table(
    pieces: Iterable[bytes],
    *,
    key: bytes,
    backup_id: uuid.UUID,
    index: int,
    segment: Segment,
    chunk_size: int,
) -> Iterator[pa.RecordBatch]:
    """The record batches of one segment, verified: tags as they come, then the plaintext
    hash, length and row count at the end (a caller must exhaust the iterator)."""
    hasher = hashlib.sha256()
    counted = [0]
    decompressor = zstandard.ZstdDecompressor().decompressobj()

    def plaintext() -> Iterator[bytes]:
        for chunk in open_segment(pieces, key, backup_id, index, segment.length, chunk_size):
            data = decompressor.decompress(chunk) if chunk else b""
            hasher.update(data)
            counted[0] += len(data)
            yield data

    source = IterReader(plaintext())
    rows = 0
    try:
        reader = pa.ipc.open_stream(pa.PythonFile(source, mode="r"))
        for batch in reader:
            rows += batch.num_rows
            yield batch
        while source.read(1 << 16):  # anything after the IPC end marker is hashed too
            pass
    except BackupCorrupt:
        raise
    except (pa.ArrowException, zstandard.ZstdError, OSError) as exc:
        if isinstance(source.error, BackupCorrupt):
            raise source.error from None
        raise BackupCorrupt(f"segment {index} ({segment.table}) is unreadable: {exc}") from None
    if (hasher.hexdigest(), counted[0], rows) != (
        segment.sha256,
        segment.plain_bytes,
        segment.rows,
    ):
        raise BackupCorrupt(f"segment {index} ({segment.table}) does not match its manifest")
