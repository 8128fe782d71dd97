"""Type detection, archive inspection and metadata: pure functions on generated files."""

from __future__ import annotations

import pytest

from tests.support import media
from workers.uploads.archive import ArchiveLimits, bomb_reason, summarize
from workers.uploads.detect import Category, Verdict, classify
from workers.uploads.errors import Rejected
from workers.uploads.metadata import extract, image_metadata, pdf_page_count

LIMITS = ArchiveLimits()


def test_detects_real_type_and_category() -> None:
    found = classify(media.photo(), declared_type="image/jpg", extension="JPG")
    assert found.verdict is Verdict.OK
    assert found.allowed is not None and found.allowed.category is Category.IMAGES


@pytest.mark.parametrize(
    ("data", "declared", "ext", "verdict"),
    [
        (media.pdf(), "image/jpeg", "jpg", Verdict.MISMATCH),  # PDF renamed .jpg
        (media.pdf(), "application/pdf", "jpg", Verdict.MISMATCH),  # right type, wrong name
        (media.elf_executable(), "image/png", "png", Verdict.NOT_ALLOWED),
        (b"just some text", "text/plain", "txt", Verdict.NOT_ALLOWED),
        (media.plain_zip(b"x"), "application/zip", "zip", Verdict.OK),
    ],
)
def test_refuses_lies(data: bytes, declared: str, ext: str, verdict: Verdict) -> None:
    assert classify(data, declared_type=declared, extension=ext).verdict is verdict


def test_zip_bomb_is_refused_by_ratio_without_extracting() -> None:
    summary = summarize(media.zip_bomb(), "application/zip")
    assert summary.total_uncompressed == 20 * 1024 * 1024
    assert "ratio" in (bomb_reason(summary, LIMITS) or "")


def test_archive_limits_on_entries_and_size() -> None:
    summary = summarize(media.plain_zip(b"abc", entries=20), "application/zip")
    assert bomb_reason(summary, LIMITS) is None
    assert "entries" in (bomb_reason(summary, ArchiveLimits(max_entries=10)) or "")
    assert "uncompressed" in (bomb_reason(summary, ArchiveLimits(max_total_bytes=10)) or "")


def test_image_metadata_strips_gps() -> None:
    meta = image_metadata(media.photo(orientation=6), max_pixels=10**8)
    assert (meta["format"], meta["width"], meta["height"]) == ("JPEG", 640, 480)
    assert meta["orientation"] == 6
    assert meta["exif"]["Make"] == "ConveyorCam"
    assert "GPSInfo" not in meta["exif"]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (media.bomb_png(), "bomb"),
        (media.jpeg_claiming(60_000, 60_000), "bomb"),
        (b"\x89PNG\r\n\x1a\n garbage", "corrupt"),
    ],
)
def test_image_header_refusals(data: bytes, code: str) -> None:
    with pytest.raises(Rejected) as caught:
        image_metadata(data, max_pixels=10**8)
    assert caught.value.code == code


def test_pdf_pages_and_corrupt_pdf() -> None:
    assert pdf_page_count(media.pdf(3)) == 3
    with pytest.raises(Rejected, match="PDF"):
        pdf_page_count(b"%PDF-1.7\n garbage")


def test_extract_by_category() -> None:
    zipped = media.plain_zip(b"hello", entries=2)
    meta = extract(zipped, Category.ARCHIVES, "application/zip", max_pixels=1, archives=LIMITS)
    assert meta == {"entries": 2, "uncompressed_bytes": 10}
    with pytest.raises(Rejected) as caught:
        extract(
            media.zip_bomb(), Category.ARCHIVES, "application/zip", max_pixels=1, archives=LIMITS
        )
    assert caught.value.code == "bomb"


def test_audio_duration_is_read_from_the_container() -> None:
    import io
    import wave

    from workers.uploads.detect import Category
    from workers.uploads.metadata import media_metadata

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00\x00\x00" * 8000 * 3)
    meta = media_metadata(buffer.getvalue())
    assert meta["duration_s"] == 3.0
    assert meta["sample_rate"] == 8000 and meta["channels"] == 2
    assert media_metadata(b"RIFF\x00\x00\x00\x00WAVEjunk") == {}  # unreadable: no duration
    assert Category.AUDIO.value == "audio"


def test_clamd_address_parsing_and_default_off() -> None:
    import pytest

    from shared.config import Settings
    from workers.uploads.scanning import ClamdScanner, scanner_from_settings

    assert scanner_from_settings(Settings()) is None
    scanner = scanner_from_settings(Settings(clamd_address="clamav.internal:3310"))
    assert scanner == ClamdScanner("clamav.internal", 3310)
    for bad in ("clamav", ":3310", "host:port"):
        with pytest.raises(ValueError):
            ClamdScanner.parse(bad)
