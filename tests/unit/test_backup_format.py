"""The chunked AEAD stream and the Arrow/zstd pipeline: round trips and every tampering."""

from __future__ import annotations

import os
import uuid

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.backups.chunks import TAG_BYTES, BackupCorrupt, Sealer, open_segment, sealed_length
from workers.backups.manifest import Segment
from workers.backups.pipeline import IterReader, SegmentStats, open_table, seal_tables

CHUNK = 64
KEY = os.urandom(32)
BACKUP = uuid.uuid4()


def seal(plain: bytes, *, segment: int = 0, key: bytes = KEY) -> bytes:
    sealer = Sealer(key, BACKUP, segment, CHUNK)
    out = sealer.feed(plain)
    return b"".join([*out, sealer.finish()])


def unseal(data: bytes, *, segment: int = 0, key: bytes = KEY, length: int | None = None) -> bytes:
    pieces = [data[i : i + 7] for i in range(0, len(data), 7)]
    size = len(data) if length is None else length
    return b"".join(open_segment(pieces, key, BACKUP, segment, size, CHUNK))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600))
def test_any_plaintext_round_trips_with_the_predicted_length(plain: bytes) -> None:
    sealed = seal(plain)
    assert len(sealed) == sealed_length(len(plain), CHUNK)
    assert unseal(sealed) == plain


PLAIN = bytes(range(256)) * 2  # 8 chunks of 64


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda d: d[:10] + bytes([d[10] ^ 1]) + d[11:], id="flipped_byte"),
        pytest.param(lambda d: d[CHUNK + TAG_BYTES :], id="first_chunk_dropped"),
        pytest.param(lambda d: d[: -(CHUNK + TAG_BYTES)], id="last_chunk_dropped"),
        pytest.param(lambda d: d[:-1], id="one_byte_short"),
        pytest.param(lambda d: d + b"\0" * 17, id="appended"),
        pytest.param(
            lambda d: (
                d[CHUNK + TAG_BYTES : 2 * (CHUNK + TAG_BYTES)]
                + d[: CHUNK + TAG_BYTES]
                + d[2 * (CHUNK + TAG_BYTES) :]
            ),
            id="swapped_chunks",
        ),
    ],
)
def test_tampering_fails(tamper: object) -> None:
    sealed = seal(PLAIN)
    with pytest.raises(BackupCorrupt):
        unseal(tamper(sealed))  # type: ignore[operator]


def test_truncation_at_a_chunk_boundary_with_a_matching_length_still_fails() -> None:
    # Even if an attacker could also shorten the recorded length, the last chunk left is
    # not sealed as final.
    cut = seal(PLAIN)[: 3 * (CHUNK + TAG_BYTES)]
    with pytest.raises(BackupCorrupt, match="chunk 2"):
        unseal(cut)


def test_a_chunk_moved_to_another_segment_or_key_fails() -> None:
    sealed = seal(PLAIN, segment=1)
    with pytest.raises(BackupCorrupt):
        unseal(sealed, segment=2)
    with pytest.raises(BackupCorrupt):
        unseal(sealed, segment=1, key=os.urandom(32))


def _reader(rows: int) -> pa.RecordBatchReader:
    table = pa.table({"id": list(range(rows)), "body": [f"message {i}" * 3 for i in range(rows)]})
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=100))


def _sealed_tables() -> tuple[bytes, list[Segment], list[tuple[str, int]]]:
    stats: list[SegmentStats] = []
    seen: list[tuple[str, int]] = []
    body = b"".join(
        seal_tables(
            [("a", _reader(1000)), ("empty", _reader(0))],
            key=KEY,
            backup_id=BACKUP,
            stats=stats,
            on_batch=lambda table, rows, _: seen.append((table, rows)),
            chunk_size=CHUNK * 16,
        )
    )
    return body, [s.segment() for s in stats], seen


def test_tables_round_trip_through_arrow_zstd_and_chunks() -> None:
    body, segments, seen = _sealed_tables()
    assert [s.rows for s in segments] == [1000, 0] and sum(r for _, r in seen) == 1000
    assert segments[1].offset == segments[0].length == len(body) - segments[1].length
    for index, segment in enumerate(segments):
        piece = body[segment.offset : segment.offset + segment.length]
        batches = list(
            open_table(
                [piece],
                key=KEY,
                backup_id=BACKUP,
                index=index,
                segment=segment,
                chunk_size=CHUNK * 16,
            )
        )
        assert sum(b.num_rows for b in batches) == segment.rows


def test_a_manifest_that_lies_about_rows_or_hash_is_caught() -> None:
    body, segments, _ = _sealed_tables()
    piece = body[: segments[0].length]
    for lie in ({"rows": 999}, {"sha256": "0" * 64}, {"plain_bytes": 1}):
        wrong = segments[0].model_copy(update=lie)
        with pytest.raises(BackupCorrupt, match="does not match"):
            list(
                open_table(
                    [piece],
                    key=KEY,
                    backup_id=BACKUP,
                    index=0,
                    segment=wrong,
                    chunk_size=CHUNK * 16,
                )
            )


def test_iter_reader_fills_reads_across_pieces() -> None:
    reader = IterReader([b"ab", b"", b"cde", b"f"])
    assert (reader.read(4), reader.read(10), reader.read(1)) == (b"abcd", b"ef", b"")
